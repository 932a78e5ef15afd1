/**
 * Every activity heartbeats while it runs (once a second), whatever it awaits: a Docker pull or
 * build, a container start, a dump. The profiles (src/workflows/profiles.ts) give each call a
 * heartbeatTimeout of a few seconds, so when a worker dies mid-call the server times the attempt
 * out within those seconds and the retry goes to the next worker that polls the queue — instead of
 * waiting out the call's whole start-to-close limit (minutes).
 *
 * An activity that heartbeats with details of its own (health, exec) still does; these beats carry
 * none and only say "alive". No one reads heartbeat details back (no resumption from them).
 */
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

export const HEARTBEAT_EVERY_MS = 1000;

/** The interceptor the workers install: a beat every second from start to end of each activity. */
export const heartbeatInterceptors: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      // A local activity lives inside its workflow task: it has no heartbeat of its own (issue #14).
      if (ctx.info.isLocal) return next(input);
      const timer = setInterval(() => ctx.heartbeat(), HEARTBEAT_EVERY_MS);
      try {
        return await next(input);
      } finally {
        clearInterval(timer);
      }
    },
  },
});
