import { KeywardError } from '@keyward/sdk';

/** A sentence for an error from the API, for a form or a notification. */
export function errorMessage(error: unknown): string {
  if (error instanceof KeywardError) {
    const fields = error.problem.errors?.map((e) => `${e.field.replace(/^body\./, '')}: ${e.message}`).join('; ');
    if (error.status === 0) return 'Keyward could not be reached. Check your connection and try again.';
    return [error.problem.detail ?? error.problem.title, fields].filter(Boolean).join(' — ');
  }
  return error instanceof Error ? error.message : 'Something went wrong.';
}

export const isStatus = (error: unknown, status: number): boolean => error instanceof KeywardError && error.status === status;
