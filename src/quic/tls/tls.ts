/**
 * TLS 1.3 handshake for QUIC, sans-I/O (RFC 8446 §2, §4; RFC 9001 §4, §8): client and server, (EC)DHE with
 * X25519/secp256r1, HelloRetryRequest, certificate authentication of the server. No TLS records, no
 * ChangeCipherSpec, no 0-RTT, resumption or client certificates. QUIC supplies the Initial keys; this module
 * delivers the Handshake and 1-RTT traffic secrets (RFC 9001 §4.1.4 timing) and the handshake bytes per level.
 */
import { type KeyObject, type X509Certificate } from 'node:crypto';
import { randomBuffer } from '../../util/random.js';
import { isIP } from 'node:net';
import { DecodeError } from '../../util/varint.js';
import { ownCopy } from '../../util/buffers.js';
import { cryptoBackend } from '../crypto/backend.js';
import type { CipherSuite } from '../crypto/suites.js';
import { TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256 } from '../crypto/suites.js';
import { TlsAlert, TlsError } from '../errors.js';
import { Level } from '../types.js';
import {
  ExtensionType,
  TLS13_VERSION,
  decodeAlpn,
  decodeCookie,
  decodeKeyShareClient,
  decodeKeyShareServer,
  decodeServerName,
  decodeSupportedVersionsClient,
  decodeU16,
  decodeU16List,
  encodeAlpn,
  encodeCookie,
  encodeKeyShareClient,
  encodeKeyShareServer,
  encodeServerName,
  encodeSupportedVersionsClient,
  encodeU16,
  encodeU16List,
  type Extension,
} from './extensions.js';
import { deriveApplicationSecrets, deriveHandshakeSecrets, finishedVerifyData, macEqual, Transcript } from './keyschedule.js';
import { generateKeyShare, groupById, groupId, type Group, type KeyShare } from './keyshare.js';
import {
  HRR_RANDOM,
  HandshakeType,
  MessageBuffer,
  decodeCertificate,
  decodeCertificateVerify,
  decodeClientHello,
  decodeEncryptedExtensions,
  decodeServerHello,
  encodeCertificate,
  encodeCertificateVerify,
  encodeClientHello,
  encodeEncryptedExtensions,
  encodeFinished,
  encodeServerHello,
  type ClientHello,
  type HandshakeMessage,
} from './messages.js';
import {
  OFFERED_SIGNATURE_SCHEMES,
  chooseSignatureScheme,
  parseCertificates,
  signCertificateVerify,
  verifyCertificateChain,
  verifyCertificateVerify,
} from './verify.js';

export type { Group } from './keyshare.js';

export interface TlsConfig {
  role: 'client' | 'server';
  /** Client: offered. Server: supported, in the server's preference order. */
  alpn: string[];
  /** Client: SNI (omitted for IP literals) and the name or IP verified against the certificate. */
  serverName?: string;
  /** Server: DER certificates, leaf first. */
  certChain?: Buffer[];
  /** Server: ECDSA P-256/P-384, RSA (signs with rsa_pss_rsae_*), or Ed25519. */
  privateKey?: KeyObject;
  /** Client: trusted roots (DER); undefined means Node's tls.rootCertificates. */
  ca?: Buffer[];
  /** Client: skip chain and name verification (the CertificateVerify signature is still checked). */
  insecure?: boolean;
  /** Our encoded quic_transport_parameters extension body, opaque here. */
  transportParameters: Buffer;
  /**
   * The client offers them in order; the server picks its first match. Default AES_128_GCM, AES_256_GCM, CHACHA20;
   * a server with the sodium backend active (crypto/backend.ts) defaults to CHACHA20 first, then the AES suites.
   */
  cipherSuites?: CipherSuite[];
  /**
   * Client: a key share is sent for groups[0] only, supported_groups lists all. Server: accepted groups in
   * preference order; HelloRetryRequest when the client's share matches none but supported_groups does.
   */
  groups?: Group[];
  /** Client: the time for certificate validity checks; dates are not checked when absent. */
  now?: Date;
  /** NSS key log lines without a trailing newline. */
  keyLog?: (line: string) => void;
}

export interface TlsSecret {
  level: Level;
  direction: 'read' | 'write';
  suite: CipherSuite;
  secret: Buffer;
}

type State =
  | 'client_start'
  | 'wait_server_hello'
  | 'wait_encrypted_extensions'
  | 'wait_certificate'
  | 'wait_certificate_verify'
  | 'wait_server_finished'
  | 'wait_client_hello'
  | 'wait_client_hello_2'
  | 'wait_client_finished'
  | 'connected';

const DEFAULT_SUITES: readonly CipherSuite[] = [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256];
/** With libsodium, ChaCha20-Poly1305 is the cheapest AEAD per packet, so a server prefers it when the client offers it. */
const SODIUM_SERVER_SUITES: readonly CipherSuite[] = [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384];
const DEFAULT_GROUPS: readonly Group[] = ['x25519', 'secp256r1'];
const LEVEL_NAMES = ['Initial', 'Handshake', '1-RTT'];
const EMPTY = Buffer.alloc(0);

function expectedLevel(state: State): Level | null {
  switch (state) {
    case 'client_start':
      return null;
    case 'wait_server_hello':
    case 'wait_client_hello':
    case 'wait_client_hello_2':
      return Level.Initial;
    case 'connected':
      return Level.OneRtt;
    default:
      return Level.Handshake;
  }
}

/**
 * The server's Certificate message: the same bytes for every handshake with a chain (no request context, no
 * extensions), so it is encoded once per configured chain. Messages are never changed after they are built.
 */
const certificateMessages = new WeakMap<Buffer[], Buffer>();

function certificateMessage(chain: Buffer[]): Buffer {
  let m = certificateMessages.get(chain);
  if (!m) certificateMessages.set(chain, (m = encodeCertificate(chain)));
  return m;
}

function messageName(type: number): string {
  for (const [name, v] of Object.entries(HandshakeType)) if (v === type) return name;
  return `type ${type}`;
}

export class TlsEndpoint {
  private config: TlsConfig;
  private readonly suites: readonly CipherSuite[];
  private readonly groups: readonly Group[];
  private state: State;
  private failure: TlsError | null = null;
  private readonly buffers = [new MessageBuffer(), new MessageBuffer(), new MessageBuffer()];
  private output: { level: Level; data: Buffer }[] = [];
  private secrets: TlsSecret[] = [];
  private readonly transcript = new Transcript();

  private suite: CipherSuite | null = null;
  private keyShare: KeyShare | null = null;
  private random: Buffer | null = null;
  private handshakeSecret: Buffer | null = null;
  private clientHsSecret: Buffer | null = null;
  private serverHsSecret: Buffer | null = null;
  private clientAppSecret: Buffer | null = null;
  private complete = false;
  private selectedAlpn: string | null = null;
  private peerParams: Buffer | null = null;
  private sni: string | null = null;
  private certificates: X509Certificate[] = [];

  // Client: the suite a HelloRetryRequest chose and whether one was seen. Server: the group it asked for.
  private hrrSuite: CipherSuite | null = null;
  private hrrGroup: Group | null = null;
  private firstClientHello: ClientHello | null = null;
  private cookie: Buffer | null = null;

  constructor(config: TlsConfig) {
    this.config = config;
    this.suites = config.cipherSuites?.length
      ? config.cipherSuites
      : config.role === 'server' && cryptoBackend().name === 'sodium'
        ? SODIUM_SERVER_SUITES
        : DEFAULT_SUITES;
    this.groups = config.groups?.length ? config.groups : DEFAULT_GROUPS;
    if (config.role === 'server') {
      if (!config.certChain?.length || !config.privateKey) throw new Error('TLS server needs certChain and privateKey');
      this.state = 'wait_client_hello';
    } else {
      if (!config.alpn.length) throw new Error('TLS client needs at least one ALPN protocol (RFC 9001 §8.1)');
      this.state = 'client_start';
    }
  }

  get handshakeComplete(): boolean {
    return this.complete;
  }
  get alpn(): string | null {
    return this.selectedAlpn;
  }
  get peerTransportParameters(): Buffer | null {
    return this.peerParams;
  }
  get cipherSuite(): CipherSuite | null {
    return this.suite;
  }
  get serverName(): string | null {
    return this.sni;
  }
  get peerCertificates(): X509Certificate[] {
    return this.certificates;
  }
  get clientRandom(): Buffer | null {
    return this.random;
  }

  /** Client: queues the ClientHello at the Initial level. Server: no-op. */
  start(): void {
    if (this.config.role === 'server') return;
    if (this.state !== 'client_start') throw new Error('TlsEndpoint.start() called twice');
    this.random = randomBuffer(32);
    this.keyShare = generateKeyShare(this.groups[0]);
    this.sendClientHello();
    this.state = 'wait_server_hello';
  }

  /** In-order CRYPTO bytes at `level`. Throws TlsError on any failure; the endpoint is unusable afterwards. */
  receive(level: Level, data: Buffer): void {
    if (this.failure) throw this.failure;
    try {
      this.receiveInner(level, data);
    } catch (e) {
      let err: TlsError;
      if (e instanceof TlsError) err = e;
      else if (e instanceof DecodeError) err = new TlsError(TlsAlert.decode_error, `malformed handshake message: ${e.message}`);
      else err = new TlsError(TlsAlert.internal_error, (e as Error).message ?? String(e));
      this.failure = err;
      throw err;
    }
  }

  takeOutput(): { level: Level; data: Buffer }[] {
    const out = this.output;
    this.output = [];
    return out;
  }

  takeSecrets(): TlsSecret[] {
    const out = this.secrets;
    this.secrets = [];
    return out;
  }

  // ---------------------------------------------------------------------------------------------------------------

  private receiveInner(level: Level, data: Buffer): void {
    const want = expectedLevel(this.state);
    if (level !== want) {
      throw new TlsError(
        TlsAlert.unexpected_message,
        want === null ? `handshake data at ${LEVEL_NAMES[level]} level before start()` : `handshake data at ${LEVEL_NAMES[level]} level while expecting ${LEVEL_NAMES[want]}`,
      );
    }
    const buf = this.buffers[level];
    buf.push(data);
    for (let msg = buf.next(); msg; msg = buf.next()) {
      this.handle(msg);
      if (buf.buffered > 0 && expectedLevel(this.state) !== level)
        throw new TlsError(TlsAlert.unexpected_message, `unexpected data after ${messageName(msg.type)} at ${LEVEL_NAMES[level]} level`);
    }
  }

  private handle(msg: HandshakeMessage): void {
    if (msg.type === HandshakeType.key_update)
      throw new TlsError(TlsAlert.unexpected_message, 'KeyUpdate is not allowed in QUIC (RFC 9001 §6)');
    switch (this.state) {
      case 'wait_server_hello':
        this.expect(msg, HandshakeType.server_hello);
        return this.onServerHello(msg);
      case 'wait_encrypted_extensions':
        this.expect(msg, HandshakeType.encrypted_extensions);
        return this.onEncryptedExtensions(msg);
      case 'wait_certificate':
        if (msg.type === HandshakeType.certificate_request)
          throw new TlsError(TlsAlert.unexpected_message, 'server requested a client certificate, which is not supported');
        this.expect(msg, HandshakeType.certificate);
        return this.onCertificate(msg);
      case 'wait_certificate_verify':
        this.expect(msg, HandshakeType.certificate_verify);
        return this.onCertificateVerify(msg);
      case 'wait_server_finished':
        this.expect(msg, HandshakeType.finished);
        return this.onServerFinished(msg);
      case 'wait_client_hello':
      case 'wait_client_hello_2':
        this.expect(msg, HandshakeType.client_hello);
        return this.onClientHello(msg);
      case 'wait_client_finished':
        this.expect(msg, HandshakeType.finished);
        return this.onClientFinished(msg);
      case 'connected':
        // Session tickets are ignored: no resumption yet.
        if (this.config.role === 'client' && msg.type === HandshakeType.new_session_ticket) return;
        throw new TlsError(TlsAlert.unexpected_message, `unexpected ${messageName(msg.type)} after the handshake`);
      default:
        throw new TlsError(TlsAlert.unexpected_message, `unexpected ${messageName(msg.type)}`);
    }
  }

  private expect(msg: HandshakeMessage, type: number): void {
    if (msg.type !== type) throw new TlsError(TlsAlert.unexpected_message, `expected ${messageName(type)}, received ${messageName(msg.type)}`);
  }

  private send(level: Level, message: Buffer): void {
    this.transcript.add(message);
    this.output.push({ level, data: message });
  }

  private emit(level: Level, direction: 'read' | 'write', secret: Buffer): void {
    this.secrets.push({ level, direction, suite: this.suite!, secret });
  }

  private log(label: string, secret: Buffer): void {
    this.config.keyLog?.(`${label} ${this.random!.toString('hex')} ${secret.toString('hex')}`);
  }

  private hashName() {
    return this.suite!.hash;
  }

  // Client ----------------------------------------------------------------------------------------------------------

  private sendClientHello(): void {
    const c = this.config;
    const exts: Extension[] = [];
    if (c.serverName && !isIP(c.serverName.replace(/^\[(.*)\]$/, '$1')))
      exts.push({ type: ExtensionType.server_name, data: encodeServerName(c.serverName) });
    exts.push({ type: ExtensionType.supported_versions, data: encodeSupportedVersionsClient([TLS13_VERSION]) });
    exts.push({ type: ExtensionType.supported_groups, data: encodeU16List(this.groups.map(groupId)) });
    exts.push({ type: ExtensionType.signature_algorithms, data: encodeU16List([...OFFERED_SIGNATURE_SCHEMES]) });
    const share = this.keyShare!;
    exts.push({ type: ExtensionType.key_share, data: encodeKeyShareClient([{ group: groupId(share.group), keyExchange: share.publicKey }]) });
    exts.push({ type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn(c.alpn) });
    exts.push({ type: ExtensionType.quic_transport_parameters, data: c.transportParameters });
    if (this.cookie) exts.push({ type: ExtensionType.cookie, data: encodeCookie(this.cookie) });
    // After a HelloRetryRequest only key_share and cookie may change (RFC 8446 §4.1.2): same random and suites.
    this.send(Level.Initial, encodeClientHello(this.random!, this.suites.map((s) => s.id), exts));
  }

  /** Checks shared by ServerHello and HelloRetryRequest; returns the chosen suite. */
  private checkServerHelloCommon(sh: ReturnType<typeof decodeServerHello>, allowed: number[]): CipherSuite {
    if (sh.sessionIdEcho.length !== 0) throw new TlsError(TlsAlert.illegal_parameter, 'legacy_session_id_echo does not match');
    const suite = this.suites.find((s) => s.id === sh.cipherSuite);
    if (!suite) throw new TlsError(TlsAlert.illegal_parameter, `server chose cipher suite 0x${sh.cipherSuite.toString(16)}, which we did not offer`);
    if (this.hrrSuite && suite !== this.hrrSuite) throw new TlsError(TlsAlert.illegal_parameter, 'ServerHello cipher suite differs from HelloRetryRequest');
    if (sh.compressionMethod !== 0) throw new TlsError(TlsAlert.illegal_parameter, 'non-null compression method');
    for (const type of sh.extensions.keys())
      if (!allowed.includes(type)) throw new TlsError(TlsAlert.unsupported_extension, `server sent extension ${type} in ServerHello`);
    const sv = sh.extensions.get(ExtensionType.supported_versions);
    if (!sv) throw new TlsError(TlsAlert.protocol_version, 'server does not speak TLS 1.3 (no supported_versions)');
    const version = decodeU16(sv, 'supported_versions');
    if (version !== TLS13_VERSION) throw new TlsError(TlsAlert.illegal_parameter, `server selected version 0x${version.toString(16)}`);
    return suite;
  }

  private onServerHello(msg: HandshakeMessage): void {
    const sh = decodeServerHello(msg.body);
    if (sh.isHelloRetryRequest) return this.onHelloRetryRequest(msg, sh);
    this.suite = this.checkServerHelloCommon(sh, [ExtensionType.supported_versions, ExtensionType.key_share]);
    const ks = sh.extensions.get(ExtensionType.key_share);
    if (!ks) throw new TlsError(TlsAlert.missing_extension, 'ServerHello has no key_share');
    const entry = decodeKeyShareServer(ks);
    const share = this.keyShare!;
    if (entry.group !== groupId(share.group))
      throw new TlsError(TlsAlert.illegal_parameter, `server key_share is for group 0x${entry.group.toString(16)}, we sent ${share.group}`);
    const shared = share.computeSecret(entry.keyExchange);
    this.transcript.add(msg.raw);
    this.installHandshakeSecrets(shared, 'client');
    this.state = 'wait_encrypted_extensions';
  }

  private onHelloRetryRequest(msg: HandshakeMessage, sh: ReturnType<typeof decodeServerHello>): void {
    if (this.hrrSuite) throw new TlsError(TlsAlert.unexpected_message, 'second HelloRetryRequest');
    const suite = this.checkServerHelloCommon(sh, [ExtensionType.supported_versions, ExtensionType.key_share, ExtensionType.cookie]);
    const ks = sh.extensions.get(ExtensionType.key_share);
    const cookie = sh.extensions.get(ExtensionType.cookie);
    if (!ks && !cookie) throw new TlsError(TlsAlert.illegal_parameter, 'HelloRetryRequest would not change the ClientHello');
    if (ks) {
      const id = decodeU16(ks, 'key_share');
      const group = groupById(id);
      if (!group || !this.groups.includes(group))
        throw new TlsError(TlsAlert.illegal_parameter, `HelloRetryRequest selects group 0x${id.toString(16)}, which we did not offer`);
      if (group === this.keyShare!.group) throw new TlsError(TlsAlert.illegal_parameter, `HelloRetryRequest selects ${group}, for which we already sent a key share`);
      this.keyShare = generateKeyShare(group);
    }
    if (cookie) this.cookie = Buffer.from(decodeCookie(cookie));
    this.hrrSuite = suite;
    this.transcript.replaceWithMessageHash(suite.hash);
    this.transcript.add(msg.raw);
    this.sendClientHello();
  }

  private onEncryptedExtensions(msg: HandshakeMessage): void {
    const exts = decodeEncryptedExtensions(msg.body);
    const allowed: number[] = [
      ExtensionType.server_name,
      ExtensionType.supported_groups,
      ExtensionType.application_layer_protocol_negotiation,
      ExtensionType.quic_transport_parameters,
    ];
    for (const type of exts.keys())
      if (!allowed.includes(type)) throw new TlsError(TlsAlert.unsupported_extension, `server sent extension ${type} in EncryptedExtensions`);
    const alpn = exts.get(ExtensionType.application_layer_protocol_negotiation);
    if (!alpn) throw new TlsError(TlsAlert.no_application_protocol, 'server did not select an application protocol (ALPN)');
    const names = decodeAlpn(alpn);
    if (names.length !== 1) throw new TlsError(TlsAlert.illegal_parameter, `server selected ${names.length} ALPN protocols`);
    if (!this.config.alpn.includes(names[0])) throw new TlsError(TlsAlert.illegal_parameter, `server selected ALPN "${names[0]}", which we did not offer`);
    const tp = exts.get(ExtensionType.quic_transport_parameters);
    if (!tp) throw new TlsError(TlsAlert.missing_extension, 'server did not send quic_transport_parameters');
    this.selectedAlpn = names[0];
    this.peerParams = ownCopy(tp);
    this.transcript.add(msg.raw);
    this.state = 'wait_certificate';
  }

  private onCertificate(msg: HandshakeMessage): void {
    const cert = decodeCertificate(msg.body);
    if (cert.context.length !== 0) throw new TlsError(TlsAlert.illegal_parameter, 'non-empty certificate_request_context from the server');
    if (cert.certificates.length === 0) throw new TlsError(TlsAlert.decode_error, 'server sent no certificate');
    const chain = parseCertificates(cert.certificates);
    if (!this.config.insecure) verifyCertificateChain(chain, { ca: this.config.ca, serverName: this.config.serverName, now: this.config.now });
    this.certificates = chain;
    this.transcript.add(msg.raw);
    this.state = 'wait_certificate_verify';
  }

  private onCertificateVerify(msg: HandshakeMessage): void {
    const { scheme, signature } = decodeCertificateVerify(msg.body);
    verifyCertificateVerify(this.certificates[0].publicKey, scheme, signature, this.transcript.hash(this.hashName()));
    this.transcript.add(msg.raw);
    this.state = 'wait_server_finished';
  }

  private onServerFinished(msg: HandshakeMessage): void {
    const hash = this.hashName();
    const expected = finishedVerifyData(hash, this.serverHsSecret!, this.transcript.hash(hash));
    if (!macEqual(expected, msg.body)) throw new TlsError(TlsAlert.decrypt_error, 'server Finished does not verify');
    this.transcript.add(msg.raw);
    const app = this.installApplicationSecrets();
    const verifyData = finishedVerifyData(hash, this.clientHsSecret!, this.transcript.hash(hash));
    this.send(Level.Handshake, encodeFinished(verifyData));
    this.emit(Level.OneRtt, 'read', app.serverApplicationTrafficSecret);
    this.emit(Level.OneRtt, 'write', app.clientApplicationTrafficSecret);
    this.finish();
  }

  /**
   * The handshake is complete: what only the handshake needed goes (the transcript and its running hash, the
   * ephemeral key share, the handshake and master-derived secrets, a first ClientHello and cookie), so that an
   * established connection keeps a few small fields here (ALPN, SNI, the client random, the peer's transport
   * parameters, the peer's certificates on a client) instead of its whole handshake. The traffic secrets were handed
   * out by takeSecrets(); nothing after this point needs the key schedule (no resumption, no exporter API).
   */
  private finish(): void {
    this.complete = true;
    this.state = 'connected';
    this.transcript.clear();
    this.keyShare = null;
    this.handshakeSecret = null;
    this.clientHsSecret = null;
    this.serverHsSecret = null;
    this.clientAppSecret = null;
    this.firstClientHello = null;
    this.cookie = null;
    // Our transport parameters were sent; the buffer they came in need not be kept.
    this.config = { ...this.config, transportParameters: EMPTY };
  }

  // Shared key schedule steps -----------------------------------------------------------------------------------------

  private installHandshakeSecrets(shared: Buffer, role: 'client' | 'server'): void {
    const hs = deriveHandshakeSecrets(this.hashName(), shared, this.transcript.hash(this.hashName()));
    this.handshakeSecret = hs.handshakeSecret;
    this.clientHsSecret = hs.clientHandshakeTrafficSecret;
    this.serverHsSecret = hs.serverHandshakeTrafficSecret;
    const [read, write] = role === 'client' ? [this.serverHsSecret, this.clientHsSecret] : [this.clientHsSecret, this.serverHsSecret];
    this.emit(Level.Handshake, 'read', read);
    this.emit(Level.Handshake, 'write', write);
    this.log('CLIENT_HANDSHAKE_TRAFFIC_SECRET', this.clientHsSecret);
    this.log('SERVER_HANDSHAKE_TRAFFIC_SECRET', this.serverHsSecret);
  }

  /** Master secret and application secrets over the transcript through the server Finished. */
  private installApplicationSecrets() {
    const app = deriveApplicationSecrets(this.hashName(), this.handshakeSecret!, this.transcript.hash(this.hashName()));
    this.clientAppSecret = app.clientApplicationTrafficSecret;
    if (this.config.keyLog) {
      this.log('CLIENT_TRAFFIC_SECRET_0', app.clientApplicationTrafficSecret);
      this.log('SERVER_TRAFFIC_SECRET_0', app.serverApplicationTrafficSecret);
      this.log('EXPORTER_SECRET', app.exporterMasterSecret);
    }
    return app;
  }

  // Server ----------------------------------------------------------------------------------------------------------

  private onClientHello(msg: HandshakeMessage): void {
    const c = this.config;
    const ch = decodeClientHello(msg.body);
    const second = this.state === 'wait_client_hello_2';
    if (second && !ch.random.equals(this.firstClientHello!.random))
      throw new TlsError(TlsAlert.illegal_parameter, 'second ClientHello has a different random');
    if (ch.sessionId.length !== 0) throw new TlsError(TlsAlert.illegal_parameter, 'non-empty legacy_session_id (RFC 9001 §8.4)');
    if (ch.compressionMethods.length !== 1 || ch.compressionMethods[0] !== 0)
      throw new TlsError(TlsAlert.illegal_parameter, 'legacy_compression_methods must be exactly [null]');
    const ext = ch.extensions;

    const sv = ext.get(ExtensionType.supported_versions);
    if (!sv || !decodeSupportedVersionsClient(sv).includes(TLS13_VERSION))
      throw new TlsError(TlsAlert.protocol_version, 'client does not offer TLS 1.3');

    const suite = this.suites.find((s) => ch.cipherSuites.includes(s.id));
    if (!suite) throw new TlsError(TlsAlert.handshake_failure, 'no common cipher suite');
    if (second && suite !== this.suite) throw new TlsError(TlsAlert.illegal_parameter, 'second ClientHello changed the cipher suites');

    const tp = ext.get(ExtensionType.quic_transport_parameters);
    if (!tp) throw new TlsError(TlsAlert.missing_extension, 'ClientHello has no quic_transport_parameters');

    const alpnExt = ext.get(ExtensionType.application_layer_protocol_negotiation);
    const offered = alpnExt ? decodeAlpn(alpnExt) : [];
    const alpn = c.alpn.find((p) => offered.includes(p));
    if (alpn === undefined)
      throw new TlsError(TlsAlert.no_application_protocol, `no common application protocol: client offers [${offered.join(', ')}], server supports [${c.alpn.join(', ')}]`);

    const sigExt = ext.get(ExtensionType.signature_algorithms);
    if (!sigExt) throw new TlsError(TlsAlert.missing_extension, 'ClientHello has no signature_algorithms');
    const scheme = chooseSignatureScheme(c.privateKey!, decodeU16List(sigExt, 'signature_algorithms'));
    if (scheme === undefined) throw new TlsError(TlsAlert.handshake_failure, `client accepts no signature scheme for our ${c.privateKey!.asymmetricKeyType} key`);

    const groupsExt = ext.get(ExtensionType.supported_groups);
    const ksExt = ext.get(ExtensionType.key_share);
    if (!groupsExt || !ksExt) throw new TlsError(TlsAlert.missing_extension, 'ClientHello has no supported_groups or key_share');
    const clientGroups = decodeU16List(groupsExt, 'supported_groups');
    const shares = decodeKeyShareClient(ksExt);
    for (const s of shares)
      if (!clientGroups.includes(s.group)) throw new TlsError(TlsAlert.illegal_parameter, `key_share for group 0x${s.group.toString(16)} not in supported_groups`);

    const snExt = ext.get(ExtensionType.server_name);
    this.sni = snExt ? decodeServerName(snExt) : null;
    this.suite = suite;
    this.selectedAlpn = alpn;
    this.peerParams = ownCopy(tp);
    this.random = ownCopy(ch.random);

    let group: Group | undefined;
    let peerShare: Buffer | undefined;
    for (const g of this.groups) {
      const s = shares.find((e) => e.group === groupId(g));
      if (s) {
        group = g;
        peerShare = s.keyExchange;
        break;
      }
    }
    if (second && (shares.length !== 1 || group !== this.hrrGroup))
      throw new TlsError(TlsAlert.illegal_parameter, `second ClientHello must carry exactly one key share, for ${this.hrrGroup}`);
    if (!group || !peerShare) {
      const wanted = this.groups.find((g) => clientGroups.includes(groupId(g)));
      if (!wanted) throw new TlsError(TlsAlert.handshake_failure, `no common key exchange group (we accept ${this.groups.join(', ')})`);
      return this.sendHelloRetryRequest(msg, ch, suite, wanted);
    }

    this.transcript.add(msg.raw);
    const share = generateKeyShare(group);
    const shared = share.computeSecret(peerShare);
    this.send(
      Level.Initial,
      encodeServerHello(randomBuffer(32), ch.sessionId, suite.id, [
        { type: ExtensionType.supported_versions, data: encodeU16(TLS13_VERSION) },
        { type: ExtensionType.key_share, data: encodeKeyShareServer({ group: groupId(group), keyExchange: share.publicKey }) },
      ]),
    );
    this.installHandshakeSecrets(shared, 'server');

    const hash = this.hashName();
    this.send(
      Level.Handshake,
      encodeEncryptedExtensions([
        { type: ExtensionType.application_layer_protocol_negotiation, data: encodeAlpn([alpn]) },
        { type: ExtensionType.quic_transport_parameters, data: c.transportParameters },
      ]),
    );
    this.send(Level.Handshake, certificateMessage(c.certChain!));
    this.send(Level.Handshake, encodeCertificateVerify(scheme, signCertificateVerify(c.privateKey!, scheme, this.transcript.hash(hash))));
    this.send(Level.Handshake, encodeFinished(finishedVerifyData(hash, this.serverHsSecret!, this.transcript.hash(hash))));
    const app = this.installApplicationSecrets();
    this.emit(Level.OneRtt, 'write', app.serverApplicationTrafficSecret);
    this.state = 'wait_client_finished';
  }

  private sendHelloRetryRequest(msg: HandshakeMessage, ch: ClientHello, suite: CipherSuite, group: Group): void {
    if (this.state === 'wait_client_hello_2') throw new TlsError(TlsAlert.illegal_parameter, 'second ClientHello still has no usable key share');
    this.firstClientHello = ch;
    this.hrrGroup = group;
    this.transcript.add(msg.raw);
    this.transcript.replaceWithMessageHash(suite.hash);
    this.send(
      Level.Initial,
      encodeServerHello(HRR_RANDOM, ch.sessionId, suite.id, [
        { type: ExtensionType.supported_versions, data: encodeU16(TLS13_VERSION) },
        { type: ExtensionType.key_share, data: encodeU16(groupId(group)) },
      ]),
    );
    this.state = 'wait_client_hello_2';
  }

  private onClientFinished(msg: HandshakeMessage): void {
    const hash = this.hashName();
    const expected = finishedVerifyData(hash, this.clientHsSecret!, this.transcript.hash(hash));
    if (!macEqual(expected, msg.body)) throw new TlsError(TlsAlert.decrypt_error, 'client Finished does not verify');
    this.transcript.add(msg.raw);
    this.emit(Level.OneRtt, 'read', this.clientAppSecret!);
    this.finish();
  }
}
