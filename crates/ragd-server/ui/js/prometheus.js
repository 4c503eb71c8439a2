// Reading a few figures out of Prometheus text (`/metrics`).

/** Sums of each metric's samples by name, over all label sets. */
export function sums(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (Number.isFinite(value)) out.set(m[1], (out.get(m[1]) || 0) + value);
  }
  return out;
}

/** Per-second rates of counters between two readings `dt` seconds apart. */
export function rate(now, before, name, dt) {
  if (!before || !(dt > 0) || !now.has(name) || !before.has(name)) return NaN;
  return Math.max(0, now.get(name) - before.get(name)) / dt;
}
