// Pairing with a PIN (docs/protocol.md §3): the PIN form, its checks and its messages,
// and what both ways of pairing send about the tablet.

import { api, newDeviceKey } from './dpop.js';
import { adoptDevice } from './device.js';
import { $ } from './render.js';

const PIN_LETTERS = 'BCDFGHJKLMNPQRSTVWXZ'; // RFC 8628 §6.1: no vowels, no look-alikes
const FEED_ID = /^[a-z0-9][a-z0-9-]{0,62}$/;
const INVALID_PIN_TEXT = 'That PIN is not valid for this feed. Ask for a new one.';
const GENERIC_PAIR_TEXT = 'Pairing did not work. Check the feed id and the network, then try again.';
export const NO_CRYPTO_TEXT = 'This browser cannot keep a key here. Open the app over https.';

export function formatPin(value) {
  const letters = [...value.toUpperCase()].filter((c) => PIN_LETTERS.includes(c)).join('').slice(0, 8);
  return letters.length > 4 ? letters.slice(0, 4) + '-' + letters.slice(4) : letters;
}

// deviceName is a hint for the admin's device list; the server keeps the full UA.
export function deviceName() {
  const ua = navigator.userAgent || '';
  const ipad = /iPad/.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1);
  const kind = ipad ? 'iPad' : ['Android', 'iPhone', 'Windows', 'Linux', 'Mac'].find((k) => ua.includes(k));
  return kind ? kind + ' screen' : '';
}

async function pair(feed, pin) {
  const candidate = await newDeviceKey();
  const body = { feed, pin };
  const name = deviceName();
  if (name) body.name = name;
  const res = await api('/api/pair', body, candidate);
  await adoptDevice(candidate, res);
}

function pairErrorText(err) {
  switch (err?.code) {
    case 'invalid_pin':
      return INVALID_PIN_TEXT;
    case 'rate_limited': {
      const s = err.retryAfter || 60;
      const wait = s < 90 ? `${s} seconds` : `${Math.ceil(s / 60)} minutes`;
      return `Too many attempts from this network. Try again in ${wait}.`;
    }
    default:
      return GENERIC_PAIR_TEXT;
  }
}

export async function onPairSubmit(e) {
  e.preventDefault();
  const error = $('pair-error');
  const feed = $('feed').value.trim().toLowerCase();
  const pin = formatPin($('pin').value);
  if (!FEED_ID.test(feed)) {
    error.textContent = 'Enter the feed id your administrator gave you, such as “lobby”.';
    return;
  }
  if (pin.length !== 9) {
    error.textContent = 'The PIN has 8 letters, such as WDJB-MJHT.';
    return;
  }
  if (!globalThis.crypto?.subtle) {
    error.textContent = NO_CRYPTO_TEXT;
    return;
  }
  const button = $('pair-submit');
  button.disabled = true;
  error.textContent = '';
  try {
    await pair(feed, pin);
  } catch (err) {
    error.textContent = pairErrorText(err);
    if (err?.code === 'invalid_pin') {
      $('pin').value = '';
      $('pin').focus();
    }
  } finally {
    button.disabled = false;
  }
}
