import { Alert, Anchor, Button, Card, Center, PasswordInput, Stack, Text, Title } from '@mantine/core';
import { IconAlertCircle } from '@tabler/icons-react';
import { type FormEvent, useState } from 'react';
import { signInError } from '../../api/session';
import { Logo } from '../../components/Logo';

/**
 * Sign in with an admin key, a key holding keyward:keys:read/write, or a user's token. The credential stays in
 * this tab (sessionStorage); the form says why a credential was refused.
 */
export function SignInPage({ onSignIn }: { onSignIn: (credential: string) => Promise<void> }) {
  const [credential, setCredential] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (credential.trim() === '') {
      setError('Enter an API key or a user token.');
      return;
    }
    setPending(true);
    setError(null);
    try {
      await onSignIn(credential);
    } catch (e) {
      setError(signInError(e).message);
      setPending(false);
    }
  };

  return (
    <Center mih="100dvh" p="md" className="kw-signin">
      <Stack w="100%" maw={420} gap="lg">
        <Center>
          <Logo />
        </Center>
        <Card withBorder radius="lg" padding="xl" shadow="sm">
          <form onSubmit={submit} noValidate>
            <Stack gap="md">
              <Stack gap={4}>
                <Title order={1} fz={20} fw={650}>
                  Sign in to Keyward
                </Title>
                <Text size="sm" c="dimmed">
                  Use an admin key, a key with keyward:keys:read or keyward:keys:write, or your user token.
                </Text>
              </Stack>
              <PasswordInput
                label="API key or token"
                placeholder="kw_… or eyJ…"
                value={credential}
                onChange={(event) => {
                  setCredential(event.currentTarget.value);
                  setError(null);
                }}
                error={error ? true : undefined}
                aria-describedby={error ? 'sign-in-error' : undefined}
                autoComplete="off"
                spellCheck={false}
                data-autofocus
                autoFocus
                styles={{ input: { fontFamily: 'var(--mantine-font-family-monospace)' } }}
              />
              {error && (
                <Alert id="sign-in-error" color="red" variant="light" icon={<IconAlertCircle size={18} aria-hidden />} role="alert">
                  {error}
                </Alert>
              )}
              <Button type="submit" fullWidth loading={pending}>
                Sign in
              </Button>
            </Stack>
          </form>
        </Card>
        <Text size="xs" c="dimmed" ta="center">
          The credential is kept in this tab only and forgotten when you sign out or close it.{' '}
          <Anchor href="/docs" size="xs">
            API reference
          </Anchor>
        </Text>
      </Stack>
    </Center>
  );
}
