// quicgo-server: an HTTP/3 server built on quic-go (Debian's 0.29), an independent peer for the interop matrix.
//
//	GET/HEAD /<path>      a file under -dir, byte for byte (http.ServeContent: Content-Length, Range, HEAD)
//	GET/HEAD /bytes?n=N   N bytes of the deterministic pattern of src/services/pattern.ts, with x-content-sha256
//	POST /upload[/...]    reads the whole body and answers {"bytes":N,"sha256":"<hex>"}
//
// stdout: one JSON line {"listening":"ADDR:PORT"} once the UDP socket is bound, and {"stopped":"<why>"} at the end.
// stderr: one JSON line per request (unless -quiet), and quic-go's own log lines.
// It stops on SIGTERM / SIGINT, and by itself after -max-time. Loopback addresses only.
//
// Build (offline, GOPATH mode, from this directory):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off CGO_ENABLED=0 GOCACHE=<dir> go build -trimpath -o OUT .
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/http3"
)

// ---------------------------------------------------------------------------------------------------------------------
// The download pattern (the same bytes as src/services/pattern.ts)
//
// A sequence of 64 KiB blocks; block k is the base block with its first 8 bytes replaced by k (uint64, little endian);
// base byte i is (i*251 + (i>>8)*13 + 7) & 0xff. The stream is cut after N bytes.

const patternBlockSize = 64 * 1024

var patternBase = func() []byte {
	b := make([]byte, patternBlockSize)
	for i := range b {
		b[i] = byte((i*251 + (i>>8)*13 + 7) & 0xff)
	}
	return b
}()

// patternBlockInto fills dst (64 KiB) with block k.
func patternBlockInto(dst []byte, k uint64) {
	copy(dst, patternBase)
	binary.LittleEndian.PutUint64(dst[:8], k)
}

// writePattern writes the first n bytes of the pattern to w.
func writePattern(w io.Writer, n int64) (int64, error) {
	block := make([]byte, patternBlockSize)
	var written int64
	for k := uint64(0); written < n; k++ {
		patternBlockInto(block, k)
		chunk := block
		if left := n - written; left < patternBlockSize {
			chunk = block[:left]
		}
		m, err := w.Write(chunk)
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

var (
	shaMu    sync.Mutex
	shaCache = map[int64]string{}
)

// patternSha256 is the hex sha256 of the first n pattern bytes (a few recent answers are cached).
func patternSha256(n int64) string {
	shaMu.Lock()
	if s, ok := shaCache[n]; ok {
		shaMu.Unlock()
		return s
	}
	shaMu.Unlock()
	h := sha256.New()
	_, _ = writePattern(h, n)
	s := hex.EncodeToString(h.Sum(nil))
	shaMu.Lock()
	if len(shaCache) >= 16 {
		for k := range shaCache {
			delete(shaCache, k)
			break
		}
	}
	shaCache[n] = s
	shaMu.Unlock()
	return s
}

// maxPatternBytes bounds GET /bytes?n=N (64 GiB).
const maxPatternBytes = int64(64) << 30

// ---------------------------------------------------------------------------------------------------------------------
// Flags

// parseSize reads a byte count: "16384", "64K"/"64KiB" (x1024), "1M"/"1MiB" (x1024^2), "1G"/"1GiB".
func parseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	upper := strings.ToUpper(t)
	for _, suf := range []struct {
		s string
		m uint64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(upper, suf.s) {
			mult = suf.m
			t = t[:len(t)-len(suf.s)]
			break
		}
	}
	v, err := strconv.ParseUint(t, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%q is not a positive byte count (e.g. 16384, 64K, 1M)", s)
	}
	return v * mult, nil
}

type sizeFlag struct {
	v   uint64
	set bool
}

func (f *sizeFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatUint(f.v, 10)
}

func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

// quic-go 0.29's defaults (internal/protocol/params.go), used to complete a window given only on one side.
const (
	defaultInitialStreamWindow = 512 << 10
	defaultMaxStreamWindow     = 6 << 20
	defaultInitialConnWindow   = 768 << 10
	defaultMaxConnWindow       = 15 << 20
)

// window turns -initial-X / -max-X into quic.Config values (0 = quic-go's default). Only one given: the other follows
// so that initial <= max. Both given: initial must not exceed max.
func window(name string, initial, max sizeFlag, defInitial, defMax uint64) (uint64, uint64, error) {
	switch {
	case initial.set && max.set:
		if initial.v > max.v {
			return 0, 0, fmt.Errorf("-initial-%s-window (%d) exceeds -max-%s-window (%d)", name, initial.v, name, max.v)
		}
		return initial.v, max.v, nil
	case initial.set:
		if initial.v > defMax {
			return initial.v, initial.v, nil
		}
		return initial.v, defMax, nil
	case max.set:
		if max.v < defInitial {
			return max.v, max.v, nil
		}
		return defInitial, max.v, nil
	}
	return 0, 0, nil
}

func loopbackHost(host string) bool {
	return host == "127.0.0.1" || host == "::1" || host == "localhost"
}

func usage(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "quicgo-server: "+format+"\n", a...)
	os.Exit(2)
}

// ---------------------------------------------------------------------------------------------------------------------
// Handlers

type server struct {
	dir   string
	quiet bool
	logMu sync.Mutex
}

// recorder keeps the status and body size of a response for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

type accessLine struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Status int    `json:"status"`
	Bytes  int64  `json:"bytes"`
	In     int64  `json:"bytesIn,omitempty"`
	Ms     int64  `json:"ms"`
	Error  string `json:"error,omitempty"`
}

func (s *server) log(l accessLine) {
	if s.quiet {
		return
	}
	b, _ := json.Marshal(l)
	s.logMu.Lock()
	os.Stderr.Write(append(b, '\n'))
	s.logMu.Unlock()
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t0 := time.Now()
	rec := &recorder{ResponseWriter: w}
	var in int64
	err := s.route(rec, r, &in)
	line := accessLine{Method: r.Method, Path: r.URL.RequestURI(), Status: rec.status, Bytes: rec.bytes, In: in, Ms: time.Since(t0).Milliseconds()}
	if len(line.Path) > 200 {
		line.Path = line.Path[:200] + "...(cut)"
	}
	if err != nil {
		line.Error = err.Error()
	}
	s.log(line)
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("content-type", "text/plain; charset=utf-8")
	w.Header().Set("content-length", strconv.Itoa(len(msg)+1))
	w.WriteHeader(code)
	_, _ = io.WriteString(w, msg+"\n")
}

func (s *server) route(w http.ResponseWriter, r *http.Request, in *int64) error {
	p := r.URL.Path
	if p == "/upload" || strings.HasPrefix(p, "/upload/") {
		if r.Method != http.MethodPost && r.Method != http.MethodPut {
			w.Header().Set("allow", "POST, PUT")
			plain(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on /upload (POST or PUT)")
			return nil
		}
		return s.upload(w, r, in)
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("allow", "GET, HEAD")
		plain(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed (GET, HEAD; POST under /upload)")
		return nil
	}
	if p == "/bytes" {
		return s.bytes(w, r)
	}
	return s.file(w, r)
}

func (s *server) upload(w http.ResponseWriter, r *http.Request, in *int64) error {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	n, err := io.CopyBuffer(h, r.Body, buf)
	*in = n
	if err != nil {
		plain(w, http.StatusBadRequest, fmt.Sprintf("request body failed after %d bytes: %v", n, err))
		return fmt.Errorf("request body: %w", err)
	}
	if r.ContentLength >= 0 && n != r.ContentLength {
		plain(w, http.StatusBadRequest, fmt.Sprintf("request body has %d bytes, content-length says %d", n, r.ContentLength))
		return fmt.Errorf("request body: %d bytes, content-length %d", n, r.ContentLength)
	}
	body, _ := json.Marshal(struct {
		Bytes  int64  `json:"bytes"`
		Sha256 string `json:"sha256"`
	}{n, hex.EncodeToString(h.Sum(nil))})
	body = append(body, '\n')
	w.Header().Set("content-type", "application/json")
	w.Header().Set("content-length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body)
	return err
}

func (s *server) bytes(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	raw := q.Get("n")
	n, err := strconv.ParseInt(raw, 10, 64)
	if raw == "" || err != nil || n < 0 || n > maxPatternBytes {
		plain(w, http.StatusBadRequest, fmt.Sprintf("query parameter n must be an integer from 0 to %d (got %q)", maxPatternBytes, raw))
		return nil
	}
	w.Header().Set("content-type", "application/octet-stream")
	w.Header().Set("content-length", strconv.FormatInt(n, 10))
	w.Header().Set("x-content-sha256", patternSha256(n))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return nil
	}
	if m, err := writePattern(w, n); err != nil {
		return fmt.Errorf("response body cut after %d of %d bytes: %w", m, n, err)
	}
	return nil
}

func (s *server) file(w http.ResponseWriter, r *http.Request) error {
	if s.dir == "" {
		plain(w, http.StatusNotFound, "not found (no -dir)")
		return nil
	}
	clean := path.Clean("/" + r.URL.Path)
	full := filepath.Join(s.dir, filepath.FromSlash(clean))
	st, err := os.Stat(full)
	if err == nil && st.IsDir() {
		full = filepath.Join(full, "index.html")
		st, err = os.Stat(full)
	}
	if err != nil || !st.Mode().IsRegular() {
		plain(w, http.StatusNotFound, "not found: "+clean)
		return nil
	}
	f, err := os.Open(full)
	if err != nil {
		plain(w, http.StatusForbidden, "cannot open "+clean)
		return nil
	}
	defer f.Close()
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, filepath.Base(full), st.ModTime(), f)
	if cw.err != nil {
		return fmt.Errorf("response body cut after %d bytes: %w", cw.n, cw.err)
	}
	return nil
}

// countingWriter remembers the first write error (http.ServeContent swallows it).
type countingWriter struct {
	http.ResponseWriter
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	m, err := c.ResponseWriter.Write(p)
	c.n += int64(m)
	if err != nil && c.err == nil {
		c.err = err
	}
	return m, err
}

// ---------------------------------------------------------------------------------------------------------------------

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "UDP `ADDR:PORT` to listen on (loopback only; port 0 picks a free one)")
	certFile := flag.String("cert", "", "certificate chain `FILE` (PEM)")
	keyFile := flag.String("key", "", "private key `FILE` (PEM)")
	dir := flag.String("dir", "", "serve files from `DIR` (GET, HEAD)")
	keylog := flag.String("keylog", "", "append TLS secrets to `FILE` (NSS key log format)")
	maxTime := flag.Duration("max-time", 300*time.Second, "stop by itself after this long")
	idle := flag.Duration("idle-timeout", 30*time.Second, "QUIC idle timeout")
	maxStreams := flag.Int64("max-streams", 100, "concurrent bidirectional streams a client may open")
	quiet := flag.Bool("quiet", false, "no access log on stderr")
	var ics, ms, icc, mc sizeFlag
	flag.Var(&ics, "initial-stream-window", "initial stream receive window, `BYTES` (e.g. 16K; quic-go default 512K, auto-tuned)")
	flag.Var(&ms, "max-stream-window", "largest stream receive window the auto-tuning may reach, `BYTES` (default 6M)")
	flag.Var(&icc, "initial-conn-window", "initial connection receive window, `BYTES` (quic-go default 768K, auto-tuned)")
	flag.Var(&mc, "max-conn-window", "largest connection receive window, `BYTES` (default 15M)")
	flag.Parse()
	if flag.NArg() > 0 {
		usage("unexpected argument %q", flag.Arg(0))
	}
	if *certFile == "" || *keyFile == "" {
		usage("-cert and -key are required")
	}
	host, _, err := net.SplitHostPort(*listen)
	if err != nil {
		usage("-listen %q: %v", *listen, err)
	}
	if !loopbackHost(host) {
		usage("-listen %q: only loopback addresses (127.0.0.1, ::1, localhost)", *listen)
	}
	if *dir != "" {
		if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
			usage("-dir %q is not a directory", *dir)
		}
	}
	if *maxStreams < 1 {
		usage("-max-streams must be at least 1")
	}
	isw, msw, err := window("stream", ics, ms, defaultInitialStreamWindow, defaultMaxStreamWindow)
	if err != nil {
		usage("%v", err)
	}
	icw, mcw, err := window("conn", icc, mc, defaultInitialConnWindow, defaultMaxConnWindow)
	if err != nil {
		usage("%v", err)
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		usage("-cert/-key: %v", err)
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if *keylog != "" {
		f, err := os.OpenFile(*keylog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			usage("-keylog: %v", err)
		}
		defer f.Close()
		tlsConf.KeyLogWriter = f
	}
	qconf := &quic.Config{
		Versions:                       []quic.VersionNumber{quic.Version1},
		MaxIdleTimeout:                 *idle,
		MaxIncomingStreams:             *maxStreams,
		InitialStreamReceiveWindow:     isw,
		MaxStreamReceiveWindow:         msw,
		InitialConnectionReceiveWindow: icw,
		MaxConnectionReceiveWindow:     mcw,
	}

	addr, err := net.ResolveUDPAddr("udp", *listen)
	if err != nil {
		usage("-listen %q: %v", *listen, err)
	}
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "quicgo-server: cannot listen on udp %s: %v\n", *listen, err)
		os.Exit(1)
	}
	srv := &http3.Server{Handler: &server{dir: *dir, quiet: *quiet}, TLSConfig: tlsConf, QuicConfig: qconf}

	stdout := json.NewEncoder(os.Stdout)
	_ = stdout.Encode(map[string]string{"listening": conn.LocalAddr().String()})

	stop := make(chan string, 2)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { stop <- "signal " + (<-sigs).String() }()
	timer := time.AfterFunc(*maxTime, func() { stop <- "max-time " + maxTime.String() })
	go func() {
		err := srv.Serve(conn)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			stop <- "error: " + err.Error()
			return
		}
		stop <- "closed"
	}()

	why := <-stop
	timer.Stop()
	_ = srv.Close()
	_ = conn.Close()
	_ = stdout.Encode(map[string]string{"stopped": why})
	if strings.HasPrefix(why, "error: ") {
		os.Exit(1)
	}
}
