/**
 * The endpoint's connection ID issuer (src/quic/cid-issuer.ts): stateless reset tokens derived from a static key
 * (HMAC-SHA256(key, cid), 16 bytes: the same on every endpoint given the key, different under another key), and the
 * routing map (issued and routed IDs reach their owner; retired and forgotten ones leave the map).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { ConnectionIdIssuer } from '../../src/quic/cid-issuer.js';
import { Endpoint } from '../../src/quic/endpoint.js';

test('cid issuer: the same key and connection ID give the same reset token on two endpoints; another key gives another', () => {
  const key = randomBytes(32);
  const a = new Endpoint({ statelessResetKey: key });
  const b = new Endpoint({ statelessResetKey: Buffer.from(key) });
  const other = new Endpoint({ statelessResetKey: randomBytes(32) });
  const byDefault = new Endpoint();
  for (let i = 0; i < 20; i++) {
    const cid = randomBytes(8);
    const t = a.cids.resetToken(cid);
    assert.equal(t.length, 16);
    assert.deepEqual(t, b.cids.resetToken(cid), 'same key, same CID: same token');
    assert.deepEqual(t, createHmac('sha256', key).update(cid).digest().subarray(0, 16), 'HMAC-SHA256(key, cid) truncated to 16 bytes');
    assert.notDeepEqual(t, other.cids.resetToken(cid), 'another key: another token');
    assert.notDeepEqual(t, byDefault.cids.resetToken(cid), 'the default key is random');
    assert.notDeepEqual(t, a.cids.resetToken(randomBytes(8)), 'another CID: another token');
  }
  assert.throws(() => new Endpoint({ statelessResetKey: Buffer.alloc(8) }), /statelessResetKey must be at least 16 bytes, got 8/);
});

test('cid issuer: issued and routed IDs reach their owner; retired ones leave the map; forget removes the rest', () => {
  const issuer = new ConnectionIdIssuer<string>(8, Buffer.alloc(32, 1));
  const a = issuer.sourceFor('a');
  const b = issuer.sourceFor('b');
  const a1 = a.newCid();
  const a2 = a.newCid();
  const b1 = b.newCid();
  assert.equal(a1.length, 8);
  assert.notDeepEqual(a1, a2);
  const odcid = randomBytes(12);
  issuer.route('a', odcid);
  issuer.route('b', odcid); // a routed key stays with its first owner
  assert.equal(issuer.size, 4);
  assert.equal(issuer.lookup(a1), 'a');
  assert.equal(issuer.lookup(a2), 'a');
  assert.equal(issuer.lookup(b1), 'b');
  assert.equal(issuer.lookup(odcid), 'a');
  assert.deepEqual(a.resetToken(a1), issuer.resetToken(a1));

  a.retire(a1);
  assert.equal(issuer.lookup(a1), undefined, 'a retired ID no longer routes');
  assert.equal(issuer.size, 3);
  a.retire(a1); // twice: nothing more happens
  assert.equal(issuer.size, 3);
  issuer.forget('a');
  assert.equal(issuer.lookup(a2), undefined);
  assert.equal(issuer.lookup(odcid), undefined);
  assert.equal(issuer.lookup(b1), 'b', "another owner's IDs stay");
  assert.equal(issuer.size, 1);
});
