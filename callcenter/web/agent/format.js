// The server's values as the agent reads them: times, money, answers, callers.

export function clampNumber(raw, lo, hi, fallback) {
  const n = Number(raw);
  return raw !== null && Number.isFinite(n) ? Math.min(hi, Math.max(lo, n)) : fallback;
}

export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60));
  const ss = String(s % 60).padStart(2, "0");
  return hours ? `${hours}:${mm.padStart(2, "0")}:${ss}` : `${mm}:${ss}`;
}

export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime())
    ? String(iso)
    : d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function day(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** An answer as the agent reads it: stored yes/no answers may come back as booleans. */
export function answerText(value) {
  if (value === true) return "yes";
  if (value === false) return "no";
  return value === null || value === undefined ? "" : String(value);
}

/** An amount as the agent reads it: with its currency when the server says which. */
export function money(raw, currency) {
  const n = Number(raw);
  if (raw === null || raw === undefined || !Number.isFinite(n)) return raw ?? "";
  if (currency) {
    try {
      return n.toLocaleString(undefined, { style: "currency", currency });
    } catch {
      /* a code the browser does not know: the number and the code, below */
    }
  }
  const plain = n.toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  return currency ? `${plain} ${currency}` : plain;
}

export function secondsSince(iso) {
  return (Date.now() - new Date(iso).getTime()) / 1000;
}

/** A calling number the agent can read back; PBXs send words ("anonymous", "restricted")
 * for a withheld one. */
export function dialable(ani) {
  return Boolean(ani) && /\d{3}/.test(ani);
}

/** What to call the caller: a provisional record (a first call) has no name yet. */
export function callerName(customer, ani) {
  if (customer && customer.name) return customer.name;
  return dialable(ani) ? `Caller ${ani}` : "Withheld number";
}

/** "from 1 to 20", "of at least 1", "of at most 20" or "": a number question's range. */
export function numberRange(q) {
  const lo = q.min_value;
  const hi = q.max_value;
  const has = (v) => v !== null && v !== undefined;
  if (has(lo) && has(hi)) return ` from ${lo} to ${hi}`;
  if (has(lo)) return ` of at least ${lo}`;
  if (has(hi)) return ` of at most ${hi}`;
  return "";
}

/** "3 days ago", "2 hours ago", "just now": how long since `iso`, as said aloud. */
export function ago(iso) {
  const seconds = secondsSince(iso);
  if (!Number.isFinite(seconds)) return "";
  const units = [
    ["year", 365 * 86400],
    ["month", 30 * 86400],
    ["week", 7 * 86400],
    ["day", 86400],
    ["hour", 3600],
    ["minute", 60],
  ];
  for (const [name, size] of units) {
    // Rounded, as said aloud: 1 day 23 hours ago is "2 days ago".
    if (seconds >= size) {
      const n = Math.round(seconds / size);
      return `${n} ${name}${n === 1 ? "" : "s"} ago`;
    }
  }
  return "just now";
}
