import type { CreateUserInput } from '@keyward/sdk';
import { Alert, Autocomplete, Button, Group, Modal, Stack, TextInput } from '@mantine/core';
import { type FormEvent, useEffect, useState } from 'react';
import { errorMessage } from '../../api/errors';
import { KNOWN_TIERS } from './tiers';

export function CreateUserDialog({
  opened,
  onClose,
  onSubmit,
}: {
  opened: boolean;
  onClose: () => void;
  onSubmit: (body: CreateUserInput) => Promise<void>;
}) {
  const [externalId, setExternalId] = useState('');
  const [email, setEmail] = useState('');
  const [tier, setTier] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [failure, setFailure] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  useEffect(() => {
    if (opened) {
      setExternalId('');
      setEmail('');
      setTier('');
      setError(null);
      setFailure(null);
    }
  }, [opened]);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (externalId.trim() === '') {
      setError("The user's id in your product is required");
      return;
    }
    setPending(true);
    setFailure(null);
    try {
      await onSubmit({
        external_id: externalId.trim(),
        ...(email.trim() ? { email: email.trim() } : {}),
        ...(tier.trim() ? { tier: tier.trim() } : {}),
      });
    } catch (e) {
      setFailure(errorMessage(e));
    } finally {
      setPending(false);
    }
  };

  return (
    <Modal opened={opened} onClose={onClose} title="Create user" centered>
      <form onSubmit={submit} noValidate>
        <Stack gap="md">
          <TextInput
            label="External id"
            description="The user's id in your product: the sub claim of their token"
            value={externalId}
            onChange={(e) => {
              setExternalId(e.currentTarget.value);
              setError(null);
            }}
            error={error}
            required
            data-autofocus
          />
          <TextInput label="Email" type="email" placeholder="Optional" value={email} onChange={(e) => setEmail(e.currentTarget.value)} />
          <Autocomplete
            label="Tier"
            description="Default tier when empty"
            placeholder="free"
            data={KNOWN_TIERS}
            value={tier}
            onChange={setTier}
          />
          {failure && (
            <Alert color="red" variant="light" role="alert">
              {failure}
            </Alert>
          )}
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" loading={pending}>
              Create user
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
