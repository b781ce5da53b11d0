// The tablet's storage: IndexedDB `kioskfeed`, object store `kv`. It holds the device
// (its non-extractable key), the view to resume from and a pending code request; a
// token never goes here.

// storage owns the one open of the database that every call shares.
export const storage = {
  opening: null, // the database being opened (or open); null: the next call opens it
};

function db() {
  if (!storage.opening) {
    storage.opening = new Promise((resolve, reject) => {
      const req = indexedDB.open('kioskfeed', 1);
      req.onupgradeneeded = () => req.result.createObjectStore('kv');
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(req.error);
    });
    storage.opening.catch(() => { storage.opening = null; }); // let a later call try again
  }
  return storage.opening;
}

async function kv(mode, op) {
  const d = await db();
  return new Promise((resolve, reject) => {
    const tx = d.transaction('kv', mode);
    const req = op(tx.objectStore('kv'));
    tx.oncomplete = () => resolve(req?.result);
    tx.onerror = tx.onabort = () => reject(tx.error);
  });
}

export const kvGet = (key) => kv('readonly', (s) => s.get(key));
export const kvPut = (key, value) => kv('readwrite', (s) => s.put(value, key));
export const kvDelete = (...keys) => kv('readwrite', (s) => { keys.forEach((k) => s.delete(k)); });

export function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), ms))]);
}
