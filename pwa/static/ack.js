// Proof of display (docs/protocol.md §5 step 8): once what the socket sent is on screen,
// tell the server {"type":"shown","seq":N}, at most once a second, coalesced to the
// newest seq. N is only ever a seq this socket received (an event's or synced's), so it
// never names what the server did not send on it.

const ACK_EVERY_MS = 1000;

const ack = {
  sock: null,     // the socket the seqs below came on
  seen: 0,        // newest seq received on it
  rendered: 0,    // newest seq received before the last render
  sent: 0,        // newest seq acknowledged on it
  lastAt: 0,      // when the last shown went out
  timer: null,
};

// held says whether acknowledgements wait: while the screen is scheduled asleep
// (schedule.js) what is rendered is not on screen; ackRendered at the wake sends it.
let held = () => false;

export function ackHold(fn) {
  held = fn;
}

// ackSocket starts over for a new socket (at its welcome).
export function ackSocket(sock) {
  clearTimeout(ack.timer);
  Object.assign(ack, { sock, seen: 0, rendered: 0, sent: 0, lastAt: 0, timer: null });
}

// ackReceived notes a seq the socket sent (an event or synced).
export function ackReceived(sock, seq) {
  const n = Number(seq);
  if (sock === ack.sock && Number.isSafeInteger(n) && n > ack.seen) ack.seen = n;
}

// ackRendered: everything received so far is on screen.
export function ackRendered() {
  ack.rendered = ack.seen;
  if (ack.rendered <= ack.sent || ack.timer || held()) return;
  const wait = ack.lastAt + ACK_EVERY_MS - Date.now();
  if (wait > 0) ack.timer = setTimeout(flush, wait);
  else flush();
}

function flush() {
  ack.timer = null;
  const sock = ack.sock;
  if (!sock || sock.readyState !== WebSocket.OPEN || ack.rendered <= ack.sent || held()) return;
  sock.send(JSON.stringify({ type: 'shown', seq: ack.rendered }));
  ack.sent = ack.rendered;
  ack.lastAt = Date.now();
}
