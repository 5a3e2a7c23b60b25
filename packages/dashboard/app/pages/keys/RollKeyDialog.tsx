import type { ApiKey } from '@keyward/sdk';
import { Alert, Button, Group, Modal, NumberInput, SegmentedControl, Stack, Text } from '@mantine/core';
import { type FormEvent, useEffect, useState } from 'react';
import { errorMessage } from '../../api/errors';
import { formatDuration } from '../../components/format';

const PRESETS = [
  { value: '0', label: 'None' },
  { value: '900', label: '15 min' },
  { value: '3600', label: '1 h' },
  { value: '86400', label: '24 h' },
  { value: 'custom', label: 'Custom' },
];

const MAX_GRACE_MINUTES = 30 * 24 * 60;

/** Rolls a key: a new key replaces it, the old one keeps working for the chosen grace period. */
export function RollKeyDialog({
  apiKey,
  onClose,
  onRoll,
}: {
  apiKey: Pick<ApiKey, 'id' | 'name'> | null;
  onClose: () => void;
  onRoll: (graceSeconds: number) => Promise<void>;
}) {
  const [preset, setPreset] = useState('3600');
  const [minutes, setMinutes] = useState<number | string>(120);
  const [pending, setPending] = useState(false);
  const [failure, setFailure] = useState<string | null>(null);
  useEffect(() => {
    if (apiKey) {
      setPreset('3600');
      setFailure(null);
    }
  }, [apiKey]);

  const customOk = typeof minutes === 'number' && minutes >= 0 && minutes <= MAX_GRACE_MINUTES;
  const grace = preset === 'custom' ? (customOk ? Math.round(Number(minutes) * 60) : null) : Number(preset);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (grace === null) return;
    setPending(true);
    setFailure(null);
    try {
      await onRoll(grace);
    } catch (error) {
      setFailure(errorMessage(error));
    } finally {
      setPending(false);
    }
  };

  return (
    <Modal opened={apiKey !== null} onClose={onClose} title={`Roll “${apiKey?.name ?? ''}”`} centered size="md">
      <form onSubmit={submit}>
        <Stack gap="md">
          <Text size="sm">
            A new key replaces this one, with the same name, scopes, metadata and limits. The current key keeps working for the grace
            period, so you can deploy the new one first.
          </Text>
          <Stack gap={6}>
            <Text size="sm" fw={500} id="grace-label">
              Grace period
            </Text>
            <SegmentedControl data={PRESETS} value={preset} onChange={setPreset} aria-labelledby="grace-label" fullWidth />
          </Stack>
          {preset === 'custom' && (
            <NumberInput
              label="Grace period (minutes)"
              description="At most 30 days"
              min={0}
              max={MAX_GRACE_MINUTES}
              allowDecimal={false}
              value={minutes}
              onChange={setMinutes}
              error={customOk ? undefined : `Between 0 and ${MAX_GRACE_MINUTES.toLocaleString()} minutes`}
            />
          )}
          <Text size="sm" c="dimmed">
            {grace === 0
              ? 'The current key stops working at once.'
              : grace === null
                ? ' '
                : `The current key stops working in ${formatDuration(grace)}.`}
          </Text>
          {failure && (
            <Alert color="red" variant="light" role="alert">
              {failure}
            </Alert>
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" loading={pending} disabled={grace === null}>
              Roll
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
