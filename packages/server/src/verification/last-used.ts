/**
 * Coalesces `last_used_at`: a verification only notes the time in memory; the latest time per key is
 * written in one batch every interval and on close — never one write per verification.
 */
export interface LastUsedRecorder {
  /** Notes that key `id` was used at `at` (epoch ms). Cheap: one Map write. */
  touch(id: string, at: number): void;
  /** Writes what has been noted since the last flush. On failure the values are kept for the next one. */
  flush(): Promise<void>;
  /** Stops the timer and flushes what is left. */
  close(): Promise<void>;
  /** Keys waiting to be written. */
  pending(): number;
}

export interface LastUsedDeps {
  /** Writes one batch (id → latest use), in one transaction. */
  write(batch: ReadonlyMap<string, number>): Promise<void>;
  flushMs: number;
}

export function createLastUsedRecorder({ write, flushMs }: LastUsedDeps): LastUsedRecorder {
  let noted = new Map<string, number>();
  let running: Promise<void> | null = null;

  function touch(id: string, at: number): void {
    const before = noted.get(id);
    if (before === undefined || at > before) noted.set(id, at);
  }

  async function writeNoted(): Promise<void> {
    if (noted.size === 0) return;
    const batch = noted;
    noted = new Map();
    try {
      await write(batch);
    } catch (error) {
      // Keep the values (the newest wins) so the next flush writes them once the database is back.
      for (const [id, at] of batch) touch(id, at);
      throw error;
    }
  }

  async function flush(): Promise<void> {
    // One flush at a time; a flush asked for during another runs after it, so nothing noted is skipped.
    while (running) await running.catch(() => {});
    running = writeNoted();
    try {
      await running;
    } finally {
      running = null;
    }
  }

  const timer = setInterval(() => {
    flush().catch(() => {});
  }, flushMs);
  timer.unref();

  return {
    touch,
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
    pending: () => noted.size,
  };
}
