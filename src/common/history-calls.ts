/**
 * The activity calls a workflow history records, in order: those scheduled on a queue (their own
 * events) and the local ones (issue #14: an agent's steps on its host's worker), which leave one
 * marker each, written when the workflow task that ran them completed. For tests and benches; not
 * workflow code (it reads payload bytes).
 */
import type { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

export interface HistoryCall {
  /** The activity's name. */
  name: string;
  local: boolean;
  /** The attempt that completed (or the last one started). */
  attempt: number;
  /** When it completed (a local call: by its worker's clock), in ms since the epoch; undefined while open. */
  completedAt?: number;
}

const LOCAL_MARKER = 'core_local_activity';
const ms = (t?: { seconds?: unknown; nanos?: number | null } | null) => (t ? Number(t.seconds) * 1000 + (t.nanos ?? 0) / 1e6 : undefined);

/** The local activity's own record in its marker (written by the SDK's core as JSON). */
interface LocalMarkerData { activity_type: string; attempt: number; complete_time?: { seconds: number; nanos: number } }

export function historyCalls(events: HistoryEvent[]): HistoryCall[] {
  const calls: HistoryCall[] = [];
  const scheduled = new Map<string, HistoryCall>();
  for (const e of events) {
    const id = String(e.eventId);
    const s = e.activityTaskScheduledEventAttributes;
    if (s) {
      const call: HistoryCall = { name: s.activityType?.name ?? '', local: false, attempt: 1 };
      scheduled.set(id, call);
      calls.push(call);
    }
    const started = e.activityTaskStartedEventAttributes;
    if (started) scheduled.get(String(started.scheduledEventId))!.attempt = started.attempt ?? 1;
    const done = e.activityTaskCompletedEventAttributes;
    if (done) scheduled.get(String(done.scheduledEventId))!.completedAt = ms(e.eventTime);
    const marker = e.markerRecordedEventAttributes;
    const data = marker?.markerName === LOCAL_MARKER ? marker.details?.data?.payloads?.[0]?.data : undefined;
    if (data) {
      const d = JSON.parse(Buffer.from(data).toString()) as LocalMarkerData;
      calls.push({ name: d.activity_type, local: true, attempt: d.attempt, completedAt: ms(d.complete_time) });
    }
  }
  return calls;
}
