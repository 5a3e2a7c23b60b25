import type { RequestBody, ResponseBody, User } from '@keyward/sdk';
import { useQuery } from '@tanstack/react-query';
import { isStatus } from './errors';
import { useSession } from './session';

/** Every user (first 100), by id: owner names in key tables and owner pickers. Admin only. */
export function useUserIndex(): { users: User[]; byId: Map<string, User> } {
  const { client, role } = useSession();
  const query = useQuery({
    queryKey: ['users', 'index'],
    queryFn: () => client.listUsers({ limit: 100 }),
    enabled: role === 'admin',
    staleTime: 30_000,
  });
  const users = query.data?.data ?? [];
  return { users, byId: new Map(users.map((u) => [u.id, u])) };
}

export const userLabel = (user: Pick<User, 'external_id' | 'email'>): string => user.email ?? user.external_id;

// ---- Webhooks (admin) ----------------------------------------------------------------------------------------
// The SDK names no webhook types yet: these come from its generated OpenAPI types, as its own do.

/** A webhook as the API returns it (never its secret). */
export type Webhook = ResponseBody<'/v1/webhooks/{id}', 'get'>;
/** A webhook just created or whose secret was rolled: with `secret`, shown once. Never put in the query cache. */
export type CreatedWebhook = ResponseBody<'/v1/webhooks', 'post', 201>;
export type CreateWebhookInput = RequestBody<'/v1/webhooks', 'post'>;
export type UpdateWebhookInput = RequestBody<'/v1/webhooks/{id}', 'patch'>;
/** One event sent to one webhook, with every attempt (`attempt_log`, oldest first). */
export type WebhookDelivery = ResponseBody<'/v1/webhooks/{id}/deliveries', 'get'>['data'][number];
export type DeliveryStatus = WebhookDelivery['status'];
/** An event type a webhook may subscribe to (`*` aside). */
export type WebhookEventType = Exclude<NonNullable<CreateWebhookInput['event_types']>[number], '*'>;

export const webhookQueryKeys = {
  all: ['webhooks'] as const,
  lists: ['webhooks', 'list'] as const,
  list: (cursor: string | undefined) => ['webhooks', 'list', cursor ?? null] as const,
  detail: (id: string) => ['webhooks', 'one', id] as const,
  deliveries: (id: string) => ['webhooks', 'one', id, 'deliveries'] as const,
};

/** One page of webhooks, newest first. */
export function useWebhooks(cursor: string | undefined) {
  const { client } = useSession();
  return useQuery({
    queryKey: webhookQueryKeys.list(cursor),
    queryFn: () => client.listWebhooks({ limit: 50, ...(cursor ? { cursor } : {}) }),
    placeholderData: (previous) => previous,
  });
}

/** One webhook (a 404 is not retried: it says "No such webhook"). */
export function useWebhook(id: string) {
  const { client } = useSession();
  return useQuery({
    queryKey: webhookQueryKeys.detail(id),
    queryFn: (): Promise<Webhook> => client.getWebhook(id),
    retry: (count, error) => !isStatus(error, 404) && count < 2,
  });
}

/** Pending, or failed with its next attempt due within a minute. */
export const isAboutToBeTried = (delivery: WebhookDelivery, now = Date.now()): boolean =>
  delivery.status === 'pending' ||
  (delivery.status === 'failed' && delivery.next_attempt_at !== null && Date.parse(delivery.next_attempt_at) - now < 60_000);

/** A page of a webhook's deliveries, newest first, each with its attempts; `status` filters. */
export function useWebhookDeliveries(id: string, query: { status?: DeliveryStatus | undefined; cursor?: string | undefined }) {
  const { client } = useSession();
  const params = { limit: 25, ...(query.status ? { status: query.status } : {}), ...(query.cursor ? { cursor: query.cursor } : {}) };
  return useQuery({
    queryKey: [...webhookQueryKeys.deliveries(id), params],
    queryFn: () => client.listWebhookDeliveries(id, params),
    placeholderData: (previous) => previous,
    // Deliveries change on their own as the worker tries them: look again while one is about to be tried.
    refetchInterval: (q) => (q.state.data?.data.some(isAboutToBeTried) ? 5_000 : false),
  });
}
