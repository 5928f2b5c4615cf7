// Checks a publisher's DSSE signature in the browser (WebCrypto Ed25519), so a
// reviewer need not trust the hub's word: the public key's SHA-256 must be the
// keyid, and the signature must hold over PAE(payloadType, payload bytes).
const encoder = new TextEncoder();

export function b64decode(text) {
  const standard = text.replace(/-/g, "+").replace(/_/g, "/");
  const padded = standard + "=".repeat((4 - (standard.length % 4)) % 4);
  const raw = atob(padded);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

// DSSE v1 pre-authentication encoding: "DSSEv1 SP LEN(type) SP type SP LEN(body) SP body".
export function pae(payloadType, payload) {
  const type = encoder.encode(payloadType);
  const head = encoder.encode(`DSSEv1 ${type.length} ${payloadType} ${payload.length} `);
  const out = new Uint8Array(head.length + payload.length);
  out.set(head, 0);
  out.set(payload, head.length);
  return out;
}

export async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

// "verified", "failed" (with why), or "unsupported" when the browser lacks Ed25519.
export async function verifySignal(signal) {
  try {
    const publicKey = b64decode(signal.public_key);
    if ((await sha256Hex(publicKey)) !== signal.keyid) {
      return { result: "failed", why: "the key is not the keyid's" };
    }
    const envelope = signal.envelope;
    const [only] = envelope.signatures;
    if (envelope.signatures.length !== 1 || only.keyid !== signal.keyid) {
      return { result: "failed", why: "the envelope is not signed by this key" };
    }
    let key;
    try {
      key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    } catch (err) {
      return { result: "unsupported", why: "this browser has no Ed25519" };
    }
    const payload = b64decode(envelope.payload);
    const ok = await crypto.subtle.verify(
      { name: "Ed25519" }, key, b64decode(only.sig), pae(envelope.payloadType, payload));
    return ok ? { result: "verified", payload } : { result: "failed", why: "bad signature" };
  } catch (err) {
    return { result: "failed", why: "malformed envelope" };
  }
}
