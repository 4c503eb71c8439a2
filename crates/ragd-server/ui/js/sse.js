// Server-sent events of a streamed completion, read from a fetch body.

/** Yields each event's data: parsed JSON, or the string "[DONE]". */
export async function* events(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block
        .split("\n")
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).replace(/^ /, ""))
        .join("\n");
      if (!data) continue;
      yield data === "[DONE]" ? data : JSON.parse(data);
    }
  }
}

/** `Server-Timing: guard;dur=1.2, total;dur=3.4` as [["guard", 1.2], ...]. */
export function serverTiming(header) {
  if (!header) return [];
  return header
    .split(",")
    .map((part) => {
      const [name, ...params] = part.trim().split(";");
      const dur = params.map((p) => p.trim()).find((p) => p.startsWith("dur="));
      return [name.trim(), dur ? Number(dur.slice(4)) : NaN];
    })
    .filter(([name, ms]) => name && Number.isFinite(ms));
}
