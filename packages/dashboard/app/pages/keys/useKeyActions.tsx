import type { ApiKey } from '@keyward/sdk';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type ReactNode, useState } from 'react';
import { useNavigate } from 'react-router';
import { errorMessage } from '../../api/errors';
import { useSession } from '../../api/session';
import { ConfirmDialog } from '../../components/ConfirmDialog';
import { formatDuration } from '../../components/format';
import { type RevealedKey, RevealKeyDialog } from '../../components/RevealKeyDialog';
import { RollKeyDialog } from './RollKeyDialog';

export type KeyAction = 'roll' | 'deactivate' | 'activate' | 'revoke' | 'delete';
type Target = Pick<ApiKey, 'id' | 'name'>;

/**
 * The lifecycle actions on a key, with their dialogs: Roll (grace period, then reveal-once), Deactivate and
 * Activate (at once), Revoke and Delete (behind a confirmation naming the key).
 */
export function useKeyActions(options: { afterDelete?: string; followRoll?: boolean } = {}): {
  run: (action: KeyAction, key: Target) => void;
  dialogs: ReactNode;
} {
  const { client, role } = useSession();
  const queryClient = useQueryClient();
  const navigate = useNavigate();
  const [rolling, setRolling] = useState<Target | null>(null);
  const [confirming, setConfirming] = useState<{ action: 'revoke' | 'delete'; key: Target } | null>(null);
  const [revealed, setRevealed] = useState<RevealedKey | null>(null);

  const refresh = async () => {
    await queryClient.invalidateQueries({ queryKey: ['keys'] });
    await queryClient.invalidateQueries({ queryKey: ['key'] });
    await queryClient.invalidateQueries({ queryKey: ['audit'] });
    // A roll or a delete changes the owner's key_count.
    await queryClient.invalidateQueries({ queryKey: ['users'] });
  };

  const simple = useMutation({
    mutationFn: async ({ action, key }: { action: 'deactivate' | 'activate'; key: Target }) =>
      action === 'deactivate' ? client.deactivateKey(key.id) : client.activateKey(key.id),
    onSuccess: async (key, { action }) => {
      await refresh();
      notifications.show({ color: action === 'deactivate' ? 'gray' : 'teal', message: `“${key.name}” ${action}d` });
    },
    onError: (error) => notifications.show({ color: 'red', title: 'Action failed', message: errorMessage(error) }),
  });

  const destructive = useMutation({
    mutationFn: async ({ action, key }: { action: 'revoke' | 'delete'; key: Target }) => {
      if (action === 'revoke') await client.revokeKey(key.id);
      else if (role === 'user') await client.deleteMyKey(key.id);
      else await client.deleteKey(key.id);
    },
    onSuccess: async (_result, { action, key }) => {
      setConfirming(null);
      if (action === 'delete') {
        queryClient.removeQueries({ queryKey: ['key', key.id] });
        if (options.afterDelete) navigate(options.afterDelete);
      }
      await refresh();
      notifications.show({
        color: action === 'revoke' ? 'red' : 'gray',
        message: `“${key.name}” ${action === 'revoke' ? 'revoked' : 'deleted'}`,
      });
    },
  });

  const run = (action: KeyAction, key: Target) => {
    if (action === 'roll') setRolling(key);
    else if (action === 'revoke' || action === 'delete') {
      destructive.reset();
      setConfirming({ action, key });
    } else simple.mutate({ action, key });
  };

  const roll = async (grace: number) => {
    if (!rolling) return;
    const created = await client.rollKey(rolling.id, { grace_period_seconds: grace });
    setRolling(null);
    await refresh();
    setRevealed({
      id: created.id,
      key: created.key,
      name: created.name,
      verb: 'rolled',
      note: grace === 0 ? 'The previous key has stopped working.' : `The previous key keeps working for ${formatDuration(grace)}.`,
    });
  };

  const name = confirming?.key.name ?? '';
  const dialogs = (
    <>
      <RollKeyDialog apiKey={rolling} onClose={() => setRolling(null)} onRoll={roll} />
      <ConfirmDialog
        opened={confirming !== null}
        title={confirming?.action === 'revoke' ? `Revoke “${name}”?` : `Delete “${name}”?`}
        action={confirming?.action === 'revoke' ? 'Revoke' : 'Delete'}
        pending={destructive.isPending}
        error={destructive.error ? errorMessage(destructive.error) : null}
        onClose={() => setConfirming(null)}
        onConfirm={() => confirming && destructive.mutate(confirming)}
      >
        {confirming?.action === 'revoke' ? (
          <>
            Every request with <b>{name}</b> will be refused from now on. Revoking is permanent: the key cannot be activated again.
          </>
        ) : (
          <>
            <b>{name}</b> and its record are removed. Requests with it are refused. Its audit trail stays. This cannot be undone.
          </>
        )}
      </ConfirmDialog>
      <RevealKeyDialog
        revealed={revealed}
        onClose={() => {
          if (options.followRoll && revealed?.id) navigate(`/keys/${revealed.id}`);
          setRevealed(null);
        }}
      />
    </>
  );
  return { run, dialogs };
}
