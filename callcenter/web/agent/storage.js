// What the page keeps in the browser: the token, the agent's unsent wrap-up drafts and the
// wrap-ups of calls that went away before they were saved, all in this tab's
// sessionStorage; and whether the ringing sound is on, in localStorage (it outlives the tab).

const TOKEN_KEY = "callcenter.agent.token";
const DRAFT_PREFIX = "callcenter.agent.draft.";
const UNFINISHED_PREFIX = "callcenter.agent.unfinished.";
const SOUND_KEY = "callcenter.agent.sound";

const store = window.sessionStorage;

export function readToken() {
  return store.getItem(TOKEN_KEY);
}

export function keepToken(token) {
  store.setItem(TOKEN_KEY, token);
}

/** Signing out: the token goes, and every draft and unfinished wrap-up with it (they may
 * quote a customer: not for the next person at this desk). */
export function forgetSession() {
  store.removeItem(TOKEN_KEY);
  for (const key of Object.keys(store)) {
    if (key.startsWith(DRAFT_PREFIX) || key.startsWith(UNFINISHED_PREFIX)) store.removeItem(key);
  }
}

/** What the agent typed for `callId` so far: {notes, outcome, answers, skip}, or {}. */
export function readDraft(callId) {
  try {
    return JSON.parse(store.getItem(DRAFT_PREFIX + callId) || "{}") || {};
  } catch {
    return {};
  }
}

export function keepDraft(callId, draft) {
  store.setItem(DRAFT_PREFIX + callId, JSON.stringify(draft));
}

export function dropDraft(callId) {
  store.removeItem(DRAFT_PREFIX + callId);
}

/** An unfinished wrap-up, as {callId, name, queue, question}, so a reload keeps its card. */
export function keepUnfinishedCall(snap) {
  store.setItem(UNFINISHED_PREFIX + snap.callId, JSON.stringify(snap));
}

export function dropUnfinishedCall(callId) {
  store.removeItem(UNFINISHED_PREFIX + callId);
}

/** The unfinished wrap-ups kept in this tab; an unreadable entry is removed. */
export function readUnfinishedCalls() {
  const snaps = [];
  for (const key of Object.keys(store)) {
    if (!key.startsWith(UNFINISHED_PREFIX)) continue;
    try {
      const snap = JSON.parse(store.getItem(key));
      if (snap && Number.isInteger(snap.callId)) snaps.push(snap);
    } catch {
      store.removeItem(key);
    }
  }
  return snaps;
}

export function soundWanted() {
  return localStorage.getItem(SOUND_KEY) === "on";
}

export function keepSound(on) {
  localStorage.setItem(SOUND_KEY, on ? "on" : "off");
}
