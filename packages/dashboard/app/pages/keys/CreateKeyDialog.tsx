import type { CreatedKey } from '@keyward/sdk';
import {
  Alert,
  Button,
  Collapse,
  Divider,
  Group,
  JsonInput,
  Modal,
  NumberInput,
  Select,
  SimpleGrid,
  Stack,
  Switch,
  TagsInput,
  Text,
  Textarea,
  TextInput,
  UnstyledButton,
} from '@mantine/core';
import { IconChevronRight } from '@tabler/icons-react';
import { type FormEvent, useEffect, useState } from 'react';
import { errorMessage } from '../../api/errors';
import {
  type CreateKeyBody,
  type CreateKeyErrors,
  type CreateKeyValues,
  createKeyBody,
  EXPIRY_PRESETS,
  type ExpiryPreset,
  emptyCreateKeyValues,
  validateCreateKey,
  WINDOWS,
} from './createKeyForm';

export type CreateKeyMode = 'admin' | 'manager' | 'user';

export interface OwnerOption {
  value: string;
  label: string;
}

/**
 * The Create key dialog. `mode` decides which fields show: a user (self-service) sets no limits, owner, prefix
 * or admin; only an admin may create an admin key.
 */
export function CreateKeyDialog({
  opened,
  mode,
  owners = [],
  defaultOwner = null,
  onClose,
  onSubmit,
  onCreated,
}: {
  opened: boolean;
  mode: CreateKeyMode;
  owners?: OwnerOption[];
  defaultOwner?: string | null;
  onClose: () => void;
  onSubmit: (body: CreateKeyBody) => Promise<CreatedKey>;
  onCreated: (created: CreatedKey) => void;
}) {
  const [values, setValues] = useState<CreateKeyValues>(() => emptyCreateKeyValues(defaultOwner));
  const [errors, setErrors] = useState<CreateKeyErrors>({});
  const [failure, setFailure] = useState<string | null>(null);
  const [pending, setPending] = useState(false);
  const [advanced, setAdvanced] = useState(false);

  useEffect(() => {
    if (opened) {
      setValues(emptyCreateKeyValues(defaultOwner));
      setErrors({});
      setFailure(null);
      setAdvanced(false);
    }
  }, [opened, defaultOwner]);

  const set = <K extends keyof CreateKeyValues>(field: K, value: CreateKeyValues[K]) => {
    setValues((current) => ({ ...current, [field]: value }));
    if (errors[field]) setErrors((current) => ({ ...current, [field]: undefined }));
  };

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    const found = validateCreateKey(values);
    setErrors(found);
    if (Object.values(found).some(Boolean)) {
      if (found.rateLimit || found.quota || found.refillAmount || found.prefix || found.metadata) setAdvanced(true);
      return;
    }
    setPending(true);
    setFailure(null);
    try {
      const created = await onSubmit(createKeyBody(values));
      onCreated(created);
    } catch (error) {
      setFailure(errorMessage(error));
    } finally {
      setPending(false);
    }
  };

  const limits = mode !== 'user';

  return (
    <Modal opened={opened} onClose={onClose} title="Create key" size="lg" centered>
      <form onSubmit={submit} noValidate>
        <Stack gap="md">
          <TextInput
            label="Name"
            description="What uses this key, e.g. “billing service”. Defaults to the key's prefix."
            placeholder="billing service"
            value={values.name}
            onChange={(event) => set('name', event.currentTarget.value)}
            error={errors.name}
            maxLength={200}
            data-autofocus
          />
          <Textarea
            label="Description"
            placeholder="Optional"
            autosize
            minRows={2}
            maxRows={5}
            value={values.description}
            onChange={(event) => set('description', event.currentTarget.value)}
            error={errors.description}
          />
          <TagsInput
            label="Scopes"
            description="Press Enter after each. inventory:* covers every inventory scope; * covers everything."
            placeholder={values.scopes.length ? '' : 'inventory:read'}
            value={values.scopes}
            onChange={(scopes) => set('scopes', scopes)}
            error={errors.scopes}
            splitChars={[',', ' ']}
            clearable
            acceptValueOnBlur
          />
          <SimpleGrid cols={{ base: 1, xs: 2 }} spacing="md">
            <Select
              label="Expires"
              data={EXPIRY_PRESETS}
              value={values.expires}
              onChange={(value) => set('expires', (value ?? 'never') as ExpiryPreset)}
              allowDeselect={false}
            />
            {values.expires === 'custom' && (
              <TextInput
                type="datetime-local"
                label="Expiry date"
                description="In your time zone"
                value={values.expiresAt}
                onChange={(event) => set('expiresAt', event.currentTarget.value)}
                error={errors.expiresAt}
              />
            )}
          </SimpleGrid>
          {limits && owners.length > 0 && (
            <Select
              label="Owner"
              description="The user this key belongs to; their tier's limits apply."
              placeholder="No owner (a service key)"
              data={owners}
              value={values.userId}
              onChange={(value) => set('userId', value)}
              searchable
              clearable
              nothingFoundMessage="No user matches"
            />
          )}

          <UnstyledButton
            onClick={() => setAdvanced((open) => !open)}
            aria-expanded={advanced}
            aria-controls="create-key-advanced"
            style={{ alignSelf: 'flex-start' }}
          >
            <Group gap={6}>
              <IconChevronRight
                size={16}
                aria-hidden
                style={{ transform: advanced ? 'rotate(90deg)' : undefined, transition: 'transform 150ms ease' }}
              />
              <Text size="sm" fw={500}>
                {limits ? 'Limits, metadata and more' : 'Metadata'}
              </Text>
            </Group>
          </UnstyledButton>
          <Collapse expanded={advanced} id="create-key-advanced">
            <Stack gap="md">
              {limits && (
                <>
                  <SimpleGrid cols={{ base: 1, xs: 2 }} spacing="md">
                    <NumberInput
                      label="Rate limit"
                      description="Requests allowed per window; empty for none"
                      placeholder="Unlimited"
                      min={1}
                      allowDecimal={false}
                      thousandSeparator=","
                      value={values.rateLimit}
                      onChange={(value) => set('rateLimit', value)}
                      error={errors.rateLimit}
                    />
                    <Select
                      label="Window"
                      description="How often the limit resets"
                      data={WINDOWS}
                      value={values.rateWindow}
                      onChange={(value) => set('rateWindow', value ?? '60')}
                      allowDeselect={false}
                      disabled={values.rateLimit === ''}
                    />
                  </SimpleGrid>
                  <SimpleGrid cols={{ base: 1, xs: 3 }} spacing="md">
                    <NumberInput
                      label="Quota"
                      description="Uses left; empty for none"
                      placeholder="Unlimited"
                      min={0}
                      allowDecimal={false}
                      thousandSeparator=","
                      value={values.quota}
                      onChange={(value) => set('quota', value)}
                      error={errors.quota}
                    />
                    <Select
                      label="Refill"
                      description="Top the quota up"
                      data={[
                        { value: '', label: 'Never' },
                        { value: 'day', label: 'Every day' },
                        { value: 'month', label: 'Every month' },
                      ]}
                      value={values.refillInterval}
                      onChange={(value) => set('refillInterval', (value ?? '') as CreateKeyValues['refillInterval'])}
                      allowDeselect={false}
                    />
                    <NumberInput
                      label="Refill amount"
                      description="Added each time"
                      min={1}
                      allowDecimal={false}
                      thousandSeparator=","
                      value={values.refillAmount}
                      onChange={(value) => set('refillAmount', value)}
                      error={errors.refillAmount}
                      disabled={values.refillInterval === ''}
                    />
                  </SimpleGrid>
                  <TextInput
                    label="Prefix"
                    description="Starts the key, e.g. sk_live; the server's default when empty."
                    placeholder="sk_live"
                    value={values.prefix}
                    onChange={(event) => set('prefix', event.currentTarget.value)}
                    error={errors.prefix}
                    ff="monospace"
                  />
                </>
              )}
              <JsonInput
                label="Metadata"
                description="A JSON object returned with every verification, e.g. {&quot;team&quot;: &quot;billing&quot;}"
                placeholder={'{\n  "team": "billing"\n}'}
                value={values.metadata}
                onChange={(value) => set('metadata', value)}
                error={errors.metadata}
                autosize
                minRows={3}
                maxRows={10}
                formatOnBlur
                validationError="Not valid JSON"
              />
              {mode === 'admin' && (
                <Switch
                  label="Admin key"
                  description="May do everything, including creating other admin keys."
                  checked={values.isAdmin}
                  onChange={(event) => set('isAdmin', event.currentTarget.checked)}
                  color="red"
                />
              )}
            </Stack>
          </Collapse>

          {failure && (
            <Alert color="red" variant="light" role="alert" title="The key was not created">
              {failure}
            </Alert>
          )}
          <Divider />
          <Group justify="flex-end">
            <Button variant="default" onClick={onClose}>
              Cancel
            </Button>
            <Button type="submit" loading={pending}>
              Create key
            </Button>
          </Group>
        </Stack>
      </form>
    </Modal>
  );
}
