// The reconnect policy (docs/protocol.md §5): when the next socket is opened after one
// closed, by close code. schedule() is the only way to a new connection, and retry.timer
// is the one reconnect timer.

import { auth, forgetDevice } from './device.js';
import { connect } from './socket.js';

const BACKOFF_BASE_MS = 1_000;
const BACKOFF_CAP_MS = 30_000;
const BACKOFF_RESET_MS = 60_000;     // a connection that lived this long resets the backoff
const TOO_MANY_FLOOR_MS = 10_000;    // 4429: the server asked us to stay away a while
const RESTART_JITTER_MS = 2_000;     // 1012: spread a whole lobby's reconnects
const RESTART_WINDOW_MS = 30_000;    // after a 1012, failed attempts retry within the jitter this long

// retry is the policy's memory between sockets.
export const retry = {
  timer: null,     // the one reconnect timer
  restartUntil: 0, // after a 1012: the server is coming back, retry soon until then
  attempt: 0,      // backoff exponent
};

// schedule is the only way to a new connection, and it keeps one timer.
export function schedule(ms) {
  clearTimeout(retry.timer);
  retry.timer = setTimeout(connect, ms);
}

// retryDelay is how long to wait after a failed attempt: soon (jittered) while a server
// that said it was restarting comes back, the doubling backoff otherwise. Doubling
// there would leave a whole lobby waiting up to 30 s for a server that was back in 3.
export function retryDelay() {
  return Date.now() < retry.restartUntil ? Math.random() * RESTART_JITTER_MS : backoff();
}

// backoff is full jitter: random in [0, min(cap, base·2^attempt)).
function backoff() {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** retry.attempt);
  retry.attempt = Math.min(retry.attempt + 1, 10);
  return Math.random() * ceiling;
}

// forgiveIfLived resets the backoff when the socket that closed had been welcomed at
// welcomedAt (0: never) and lived long enough to count as a success.
export function forgiveIfLived(welcomedAt) {
  if (welcomedAt && Date.now() - welcomedAt >= BACKOFF_RESET_MS) retry.attempt = 0;
}

// reactToClose answers a paired tablet's socket closing with code.
export function reactToClose(code) {
  switch (code) {
    case 4403: // revoked or unknown
      forgetDevice();
      return;
    case 4401: // token or proof refused: the next challenge fetches a new token
      auth.token = null;
      schedule(backoff());
      return;
    case 4429:
      schedule(TOO_MANY_FLOOR_MS + backoff());
      return;
    case 1012: // the server is restarting: come back soon, not all at once
      retry.restartUntil = Date.now() + RESTART_WINDOW_MS;
      schedule(Math.random() * RESTART_JITTER_MS);
      return;
    default: // 4400, 4408, 4409, 1003, 1009, 1011, 1013, network loss, our watchdog
      schedule(retryDelay());
  }
}
