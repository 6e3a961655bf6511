// Small DOM helpers. Every text goes in as text (textContent), never as markup.

export const $ = (id) => document.getElementById(id);

export function setText(node, value) {
  node.textContent = value === null || value === undefined ? "" : String(value);
}

/** A new `tag` element holding `text` (as text) with class `className`. */
export function h(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

/** A term and its value in a <dl>; nothing when there is no value. Returns the <dd>. */
export function addFact(list, term, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = h("dt", term);
  const dd = h("dd", value);
  list.append(dt, dd);
  return dd;
}

/** Whether a key press on `target` is typing (so A and R are letters, not Accept and Reject). */
export function isTyping(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toLowerCase();
  return tag === "textarea" || tag === "select" || target.isContentEditable ||
    (tag === "input" && !["checkbox", "radio", "button", "submit"].includes(target.type));
}

/** Mark `target` (a field, or the box of a question's inputs) invalid and focus it. */
export function markInvalid(target, skip) {
  const fields = target.matches("input, select, textarea")
    ? [target]
    : [...target.querySelectorAll("input, [role=radiogroup]")];
  for (const field of fields) field.setAttribute("aria-invalid", "true");
  const focusable = [target, ...target.querySelectorAll("input")].filter(
    (n) => n.matches("input, select, textarea") && !n.disabled,
  );
  const checked = focusable.find((n) => n.checked);
  const focus = checked || focusable[0] || skip;
  if (focus) focus.focus();
}

export function clearInvalid(root) {
  for (const node of root.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
}
