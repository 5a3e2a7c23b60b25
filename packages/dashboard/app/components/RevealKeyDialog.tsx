import { Alert, Button, Checkbox, Group, Modal, Stack, Text, TextInput } from '@mantine/core';
import { IconAlertTriangle, IconCheck, IconCopy } from '@tabler/icons-react';
import { useEffect, useState } from 'react';
import { copyText } from './copy';

export interface RevealedKey {
  /** The new key's id. */
  id?: string;
  key: string;
  name: string;
  /** What happened, e.g. "created" or "rolled". */
  verb?: string;
  /** Extra words under the key, e.g. how long the old key keeps working. */
  note?: string;
  /** What is shown: an API key (the default) or a webhook's signing secret. */
  kind?: RevealKind;
}

export type RevealKind = 'key' | 'webhook-secret';

const WORDS: Record<RevealKind, { title: string; noun: string; label: string; why: string }> = {
  key: {
    title: 'Key',
    noun: 'key',
    label: 'API key',
    why: 'Keyward keeps only a hash of it; if you lose it, roll the key to get a new one.',
  },
  'webhook-secret': {
    title: 'Webhook',
    noun: 'secret',
    label: 'Signing secret',
    why: 'Your receiver checks each delivery’s signature with it. If you lose it, roll the secret to get a new one.',
  },
};

/**
 * Shows a new key (or a webhook's signing secret) once: monospace, a Copy button, the warning that it will not be shown again, and a
 * confirmation (a checkbox) before it can be closed.
 */
export function RevealKeyDialog({ revealed, onClose }: { revealed: RevealedKey | null; onClose: () => void }) {
  const [copied, setCopied] = useState(false);
  const [copyFailed, setCopyFailed] = useState(false);
  const [stored, setStored] = useState(false);
  useEffect(() => {
    if (revealed) {
      setCopied(false);
      setCopyFailed(false);
      setStored(false);
    }
  }, [revealed]);

  const words = WORDS[revealed?.kind ?? 'key'];
  const copy = async () => {
    if (!revealed) return;
    const ok = await copyText(revealed.key);
    setCopied(ok);
    setCopyFailed(!ok);
    if (ok) setStored(true);
  };

  return (
    <Modal
      opened={revealed !== null}
      onClose={() => stored && onClose()}
      closeOnClickOutside={false}
      closeOnEscape={false}
      withCloseButton={false}
      title={`${words.title} ${revealed?.verb ?? 'created'}: ${revealed?.name ?? ''}`}
      size="lg"
      centered
    >
      {revealed && (
        <Stack gap="md">
          <Alert variant="light" color="yellow" icon={<IconAlertTriangle size={18} aria-hidden />} title={`Copy this ${words.noun} now`}>
            It will not be shown again. {words.why}
          </Alert>
          <Group gap="xs" align="flex-end" wrap="nowrap">
            <TextInput
              label={words.label}
              value={revealed.key}
              readOnly
              onFocus={(event) => event.currentTarget.select()}
              style={{ flex: 1 }}
              styles={{ input: { fontFamily: 'var(--mantine-font-family-monospace)', fontSize: 13 } }}
              data-testid="revealed-key"
            />
            <Button
              onClick={copy}
              leftSection={copied ? <IconCheck size={16} aria-hidden /> : <IconCopy size={16} aria-hidden />}
              color={copied ? 'teal' : undefined}
              variant={copied ? 'light' : 'filled'}
              aria-label="Copy"
            >
              {copied ? 'Copied' : 'Copy'}
            </Button>
          </Group>
          {copyFailed && (
            <Text size="sm" c="red" role="alert">
              The browser refused the clipboard. Select the {words.noun} and copy it by hand.
            </Text>
          )}
          {revealed.note && (
            <Text size="sm" c="dimmed">
              {revealed.note}
            </Text>
          )}
          <Checkbox
            label={`I have copied this ${words.noun} and stored it somewhere safe`}
            checked={stored}
            onChange={(event) => setStored(event.currentTarget.checked)}
          />
          <Group justify="flex-end">
            <Button onClick={onClose} disabled={!stored}>
              Done
            </Button>
          </Group>
        </Stack>
      )}
    </Modal>
  );
}
