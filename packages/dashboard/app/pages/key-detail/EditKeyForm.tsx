import type { ApiKey, UpdateKeyInput } from '@keyward/sdk';
import { Alert, Button, Group, JsonInput, NumberInput, Select, SimpleGrid, Stack, TagsInput, Textarea, TextInput } from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { errorMessage } from '../../api/errors';
import { parseMetadata, WINDOWS } from '../keys/createKeyForm';

/** `datetime-local` text for an instant, in the browser's zone. */
export function toLocalInput(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const num = (v: number | string): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** Edits a key in place: only the fields that changed are sent (PATCH). */
export function EditKeyForm({
  apiKey,
  onSave,
  onCancel,
}: {
  apiKey: ApiKey;
  onSave: (body: UpdateKeyInput) => Promise<void>;
  onCancel: () => void;
}) {
  const [name, setName] = useState(apiKey.name);
  const [description, setDescription] = useState(apiKey.description ?? '');
  const [scopes, setScopes] = useState<string[]>(apiKey.scopes);
  const [expires, setExpires] = useState(toLocalInput(apiKey.expires_at));
  const [metadata, setMetadata] = useState(Object.keys(apiKey.metadata).length ? JSON.stringify(apiKey.metadata, null, 2) : '');
  const [rateLimit, setRateLimit] = useState<number | string>(apiKey.rate_limit?.limit ?? '');
  const [rateWindow, setRateWindow] = useState(String(apiKey.rate_limit?.window_seconds ?? 60));
  const [quota, setQuota] = useState<number | string>(apiKey.quota?.remaining ?? '');
  const [refillInterval, setRefillInterval] = useState<string>(apiKey.quota?.refill?.interval ?? '');
  const [refillAmount, setRefillAmount] = useState<number | string>(apiKey.quota?.refill?.amount ?? '');
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  const windowOptions = WINDOWS.some((w) => w.value === rateWindow)
    ? WINDOWS
    : [...WINDOWS, { value: rateWindow, label: `per ${rateWindow} s` }];

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const found: Record<string, string> = {};
    if (name.trim() === '') found.name = 'A key needs a name';
    const meta = parseMetadata(metadata);
    if (meta.error) found.metadata = meta.error;
    if (expires && Number.isNaN(new Date(expires).getTime())) found.expires = 'Not a date';
    if (refillInterval && num(refillAmount) === null) found.refillAmount = 'How many to add back each time';
    setErrors(found);
    if (Object.keys(found).length) return;

    const body: UpdateKeyInput = {};
    if (name.trim() !== apiKey.name) body.name = name.trim();
    if ((description.trim() || null) !== apiKey.description) body.description = description.trim() || null;
    if (JSON.stringify(scopes) !== JSON.stringify(apiKey.scopes)) body.scopes = scopes;
    const expiresAt = expires ? new Date(expires).toISOString() : null;
    if (expires !== toLocalInput(apiKey.expires_at)) body.expires_at = expiresAt;
    const nextMeta = meta.value ?? {};
    if (JSON.stringify(nextMeta) !== JSON.stringify(apiKey.metadata)) body.metadata = nextMeta;
    const limit = num(rateLimit);
    const nextRate = limit === null ? null : { limit, window_seconds: Number(rateWindow) };
    if (JSON.stringify(nextRate) !== JSON.stringify(apiKey.rate_limit)) body.rate_limit = nextRate;
    const remaining = num(quota);
    const amount = num(refillAmount);
    const nextQuota =
      remaining === null
        ? null
        : { remaining, ...(refillInterval && amount !== null ? { refill: { amount, interval: refillInterval as 'day' | 'month' } } : {}) };
    const currentQuota = apiKey.quota
      ? { remaining: apiKey.quota.remaining, ...(apiKey.quota.refill ? { refill: apiKey.quota.refill } : {}) }
      : null;
    if (JSON.stringify(nextQuota) !== JSON.stringify(currentQuota)) body.quota = nextQuota;
    if (Object.keys(body).length === 0) {
      onCancel();
      return;
    }
    setPending(true);
    setFailure(null);
    try {
      await onSave(body);
    } catch (error) {
      setFailure(errorMessage(error));
    } finally {
      setPending(false);
    }
  };

  return (
    <form onSubmit={submit} noValidate aria-label="Edit key">
      <Stack gap="md">
        <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="md">
          <TextInput
            label="Name"
            value={name}
            onChange={(e) => setName(e.currentTarget.value)}
            error={errors.name}
            maxLength={200}
            data-autofocus
          />
          <TextInput
            type="datetime-local"
            label="Expires"
            description="Empty for never; in your time zone"
            value={expires}
            onChange={(e) => setExpires(e.currentTarget.value)}
            error={errors.expires}
          />
        </SimpleGrid>
        <Textarea label="Description" autosize minRows={2} value={description} onChange={(e) => setDescription(e.currentTarget.value)} />
        <TagsInput
          label="Scopes"
          description="Press Enter after each"
          value={scopes}
          onChange={setScopes}
          splitChars={[',', ' ']}
          clearable
          acceptValueOnBlur
        />
        <SimpleGrid cols={{ base: 1, sm: 2 }} spacing="md">
          <NumberInput
            label="Rate limit"
            placeholder="Unlimited"
            min={1}
            allowDecimal={false}
            thousandSeparator=","
            value={rateLimit}
            onChange={setRateLimit}
          />
          <Select
            label="Window"
            data={windowOptions}
            value={rateWindow}
            onChange={(v) => setRateWindow(v ?? '60')}
            allowDeselect={false}
            disabled={rateLimit === ''}
          />
        </SimpleGrid>
        <SimpleGrid cols={{ base: 1, sm: 3 }} spacing="md">
          <NumberInput
            label="Quota"
            placeholder="Unlimited"
            min={0}
            allowDecimal={false}
            thousandSeparator=","
            value={quota}
            onChange={setQuota}
          />
          <Select
            label="Refill"
            data={[
              { value: '', label: 'Never' },
              { value: 'day', label: 'Every day' },
              { value: 'month', label: 'Every month' },
            ]}
            value={refillInterval}
            onChange={(v) => setRefillInterval(v ?? '')}
            allowDeselect={false}
            disabled={quota === ''}
          />
          <NumberInput
            label="Refill amount"
            min={1}
            allowDecimal={false}
            thousandSeparator=","
            value={refillAmount}
            onChange={setRefillAmount}
            error={errors.refillAmount}
            disabled={refillInterval === '' || quota === ''}
          />
        </SimpleGrid>
        <JsonInput
          label="Metadata"
          value={metadata}
          onChange={setMetadata}
          error={errors.metadata}
          autosize
          minRows={3}
          maxRows={12}
          formatOnBlur
          validationError="Not valid JSON"
        />
        {failure && (
          <Alert color="red" variant="light" role="alert" title="Not saved">
            {failure}
          </Alert>
        )}
        <Group justify="flex-end">
          <Button variant="default" onClick={onCancel}>
            Cancel
          </Button>
          <Button type="submit" loading={pending}>
            Save changes
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
