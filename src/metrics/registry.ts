/**
 * The tool's own Prometheus metrics: a process-wide registry that the activities update as they
 * run (the ledger's `recordChange`, the backup store's `recordBackup`/`markBackup`), rendered in
 * the text exposition format (version 0.0.4) by `metricsText()`. No dependency: counters, gauges
 * and summaries without quantiles are all this needs. No I/O here.
 *
 * What each number means:
 *   migrate_change_duration_seconds{kind,project,status}   summary: a deploy's or batch's start → close
 *   migrate_changes_total{kind,project,status}             closed changes (confirmed, rolled-back, failed)
 *   migrate_rollbacks_total{kind,project}                  changes that rolled back: by an operator, by a failure after a unit was touched, or a batch with any agent rolled back
 *   migrate_agents{project,phase}                          agents of the changes this worker recorded, by their change's status
 *   migrate_backup_bytes{host,component}                   size of the newest backup taken
 *   migrate_backup_duration_seconds{host,component}        its dump time
 *   migrate_backup_newest_verified_timestamp_seconds{host,component}  creation time of the newest verified backup (unix s)
 *   migrate_backups_total{host,status}                     backups recorded (taken) and marked (verified, failed)
 *   migrate_host_lost{host}                                1 while a host is lost (0: present); fed by whoever decides it
 * Several worker processes each export what they saw: sum counters across instances, max the gauges.
 */
export type Labels = Record<string, string>;

interface Family {
  help: string;
  type: 'counter' | 'gauge' | 'summary';
  /** label set (canonical JSON) → value; a summary keeps sum and count. */
  values: Map<string, { labels: Labels; value: number; count?: number }>;
}

const families = new Map<string, Family>();

function family(name: string, type: Family['type'], help: string): Family {
  let f = families.get(name);
  if (!f) {
    f = { help, type, values: new Map() };
    families.set(name, f);
  }
  return f;
}

const key = (labels: Labels) => JSON.stringify(Object.keys(labels).sort().map((k) => [k, labels[k]]));

function entry(f: Family, labels: Labels) {
  const k = key(labels);
  let e = f.values.get(k);
  if (!e) {
    e = { labels: { ...labels }, value: 0, ...(f.type === 'summary' ? { count: 0 } : {}) };
    f.values.set(k, e);
  }
  return e;
}

export function counter(name: string, help: string) {
  const f = family(name, 'counter', help);
  return { inc: (labels: Labels, by = 1) => { entry(f, labels).value += by; } };
}

export function gauge(name: string, help: string) {
  const f = family(name, 'gauge', help);
  return {
    set: (labels: Labels, value: number) => { entry(f, labels).value = value; },
    /** Keep the larger value (a "newest time" gauge). */
    max: (labels: Labels, value: number) => { const e = entry(f, labels); e.value = Math.max(e.value, value); },
    /** Replace every value of the family (a gauge recomputed from state). */
    replace: (rows: { labels: Labels; value: number }[]) => { f.values.clear(); for (const r of rows) entry(f, r.labels).value = r.value; },
  };
}

export function summary(name: string, help: string) {
  const f = family(name, 'summary', help);
  return { observe: (labels: Labels, value: number) => { const e = entry(f, labels); e.value += value; e.count! += 1; } };
}

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
const escapeHelp = (v: string) => v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
const labelText = (labels: Labels) => {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
};
const num = (v: number) => (Number.isNaN(v) ? 'NaN' : v === Infinity ? '+Inf' : v === -Infinity ? '-Inf' : String(v));

/** Every metric in the Prometheus text exposition format. */
export function metricsText(): string {
  const lines: string[] = [];
  for (const [name, f] of [...families.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    lines.push(`# HELP ${name} ${escapeHelp(f.help)}`, `# TYPE ${name} ${f.type}`);
    for (const e of f.values.values()) {
      if (f.type === 'summary') {
        lines.push(`${name}_sum${labelText(e.labels)} ${num(e.value)}`, `${name}_count${labelText(e.labels)} ${e.count}`);
      } else {
        lines.push(`${name}${labelText(e.labels)} ${num(e.value)}`);
      }
    }
  }
  return `${lines.join('\n')}\n`;
}

/** Forget every value (tests). */
export function resetMetrics(): void {
  for (const f of families.values()) f.values.clear();
}
