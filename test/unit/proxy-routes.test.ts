import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router, hostOf, normalizePath, type RouteRule } from '../../src/proxy/routes.js';

function r(name: string, o: Partial<Omit<RouteRule, 'name'>>): RouteRule {
  return { name, prefix: null, exact: null, host: null, methods: null, ...o };
}

function pick(router: Router, path: string, authority = 'example.com:4433', method = 'GET'): string | null {
  return router.match({ method, authority, path })?.route.name ?? null;
}

test('prefix matches at a segment boundary, query ignored', () => {
  const router = new Router([r('video', { prefix: '/video' })]);
  assert.equal(pick(router, '/video'), 'video');
  assert.equal(pick(router, '/video/'), 'video');
  assert.equal(pick(router, '/video/a/b.mp4'), 'video');
  assert.equal(pick(router, '/video?x=1'), 'video');
  assert.equal(pick(router, '/videos'), null);
  assert.equal(pick(router, '/vide'), null);
  assert.equal(pick(router, '/'), null);
  assert.equal(pick(router, '*', 'h', 'OPTIONS'), null);
});

test('a prefix ending in "/" and the root prefix', () => {
  const router = new Router([r('dir', { prefix: '/static/' }), r('root', { prefix: '/' })]);
  assert.equal(pick(router, '/static/x'), 'dir');
  assert.equal(pick(router, '/static/'), 'dir');
  assert.equal(pick(router, '/static'), 'root');
  assert.equal(pick(router, '/anything/else'), 'root');
});

test('exact matches only the path itself (query ignored)', () => {
  const router = new Router([r('status', { exact: '/control/status' })]);
  assert.equal(pick(router, '/control/status'), 'status');
  assert.equal(pick(router, '/control/status?verbose'), 'status');
  assert.equal(pick(router, '/control/status/'), null);
  assert.equal(pick(router, '/control/status/x'), null);
  assert.equal(pick(router, '/control'), null);
});

test('exact beats any prefix, even one listed first', () => {
  const router = new Router([r('long', { prefix: '/control/status' }), r('exact', { exact: '/control/status' })]);
  assert.equal(pick(router, '/control/status'), 'exact');
  assert.equal(pick(router, '/control/status/more'), 'long');
});

test('longer prefix beats shorter, whatever the order', () => {
  const router = new Router([r('short', { prefix: '/a' }), r('long', { prefix: '/a/b' })]);
  assert.equal(pick(router, '/a/b/c'), 'long');
  assert.equal(pick(router, '/a/bc'), 'short');
  assert.equal(pick(router, '/a'), 'short');
});

test('host: case-insensitive, port and trailing dot ignored, host-specific beats host-less', () => {
  const router = new Router([r('any', { prefix: '/x' }), r('ex', { prefix: '/x', host: 'Example.com' }), r('v6', { prefix: '/x', host: '[::1]' })]);
  assert.equal(pick(router, '/x', 'EXAMPLE.COM:4433'), 'ex');
  assert.equal(pick(router, '/x', 'example.com.'), 'ex');
  assert.equal(pick(router, '/x', 'example.com'), 'ex');
  assert.equal(pick(router, '/x', 'other.com:4433'), 'any');
  assert.equal(pick(router, '/x', '[::1]:4433'), 'v6');
  assert.equal(pick(router, '/x', ''), 'any');
  const only = new Router([r('ex', { prefix: '/x', host: 'example.com' })]);
  assert.equal(pick(only, '/x', 'other.com'), null);
});

test('path specificity comes before host: a longer host-less prefix beats a shorter host prefix', () => {
  const router = new Router([r('hosted', { prefix: '/', host: 'example.com' }), r('video', { prefix: '/video' })]);
  assert.equal(pick(router, '/video/1', 'example.com'), 'video');
  assert.equal(pick(router, '/text', 'example.com'), 'hosted');
});

test('methods: only listed methods match; method-specific beats method-less; host beats method', () => {
  const router = new Router([r('all', { prefix: '/c' }), r('post', { prefix: '/c', methods: ['POST', 'PUT'] })]);
  assert.equal(pick(router, '/c', 'h', 'POST'), 'post');
  assert.equal(pick(router, '/c', 'h', 'PUT'), 'post');
  assert.equal(pick(router, '/c', 'h', 'GET'), 'all');
  assert.equal(pick(router, '/c', 'h', 'post'), 'all', 'methods are case-sensitive');
  const only = new Router([r('get', { exact: '/c', methods: ['GET'] })]);
  assert.equal(pick(only, '/c', 'h', 'DELETE'), null);
  const hostVsMethod = new Router([r('method', { prefix: '/c', methods: ['GET'] }), r('host', { prefix: '/c', host: 'h' })]);
  assert.equal(pick(hostVsMethod, '/c', 'h', 'GET'), 'host');
  assert.equal(pick(hostVsMethod, '/c', 'other', 'GET'), 'method');
});

test('ties go to the first route in file order', () => {
  const router = new Router([r('first', { prefix: '/t' }), r('second', { prefix: '/t' }), r('third', { prefix: '/t' })]);
  assert.equal(pick(router, '/t/x'), 'first');
  const m = router.match({ method: 'GET', authority: 'h', path: '/t' });
  assert.equal(m?.index, 0);
  const hosts = new Router([r('a', { exact: '/e', host: 'h' }), r('b', { exact: '/e', host: 'h' })]);
  assert.equal(pick(hosts, '/e', 'h'), 'a');
});

test('paths are normalised before matching; forwardPath carries the normalised path and the query', () => {
  const router = new Router([r('video', { prefix: '/video' }), r('control', { prefix: '/control' })]);
  const m = router.match({ method: 'GET', authority: 'h', path: '/video/../control/x?a=/../b' });
  assert.equal(m?.route.name, 'control');
  assert.equal(m?.path, '/control/x');
  assert.equal(m?.forwardPath, '/control/x?a=/../b');
  assert.equal(pick(router, '/%76ideo/1'), 'video');
  assert.equal(pick(router, '/video/./1'), 'video');
  assert.equal(pick(router, '/../../video'), 'video');
  assert.equal(pick(router, '/video%2Fx'), null, 'an encoded slash is not a segment boundary');
});

test('normalizePath and hostOf', () => {
  assert.equal(normalizePath('/a/b'), '/a/b');
  assert.equal(normalizePath('/a/./b/../c'), '/a/c');
  assert.equal(normalizePath('/a/b/..'), '/a/');
  assert.equal(normalizePath('/a/b/.'), '/a/b/');
  assert.equal(normalizePath('/%7euser/%2f%zz'), '/~user/%2F%zz');
  assert.equal(normalizePath('/.hidden/x'), '/.hidden/x');
  assert.equal(hostOf('Example.COM:443'), 'example.com');
  assert.equal(hostOf('[2001:DB8::1]:443'), '[2001:db8::1]');
  assert.equal(hostOf('[::1]'), '[::1]');
  assert.equal(hostOf('localhost'), 'localhost');
});

test('a route with both or neither of prefix/exact is refused', () => {
  assert.throws(() => new Router([r('bad', {})]), /exactly one of prefix or exact/);
  assert.throws(() => new Router([r('bad', { prefix: '/a', exact: '/a' })]), /exactly one of prefix or exact/);
});
