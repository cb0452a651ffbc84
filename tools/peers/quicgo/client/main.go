// quicgo-client: an HTTP/3 client built on quic-go (Debian's 0.29), an independent peer for the interop matrix.
//
//	quicgo-client [flags] URL...
//
// Sends -n requests (default: one per URL, cycling through the URLs) multiplexed on ONE QUIC connection
// (http3.RoundTripper keeps one connection per origin; all URLs must share it), at most -c at a time. With -d FILE
// every request streams FILE as its body with a content-length.
//
// stdout: one JSON document
//
//	{"requests":[{"path","status","bytes","sent"?,"sha256","ms","error"?,"body"?}...],
//	 "totals":{"requests","ok","failed","bytes","bytesSent","handshakeMs","wallMs","mbPerSec"},
//	 "alpn","cipher","error"?}
//
// bytes/sha256: the response body as received; sent: request body bytes handed to the stream by the end of the request; mbPerSec:
// (bytes + bytesSent) / wall time; handshakeMs: from dialling to the handshake's completion.
//
// Exit 0 only when every request got a status < 400 and no error; 1 otherwise; 2 for bad flags.
//
// Build (offline, GOPATH mode, from this directory):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off CGO_ENABLED=0 GOCACHE=<dir> go build -trimpath -o OUT .
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lucas-clemente/quic-go"
	"github.com/lucas-clemente/quic-go/http3"
)

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

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

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

func usage(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "quicgo-client: "+format+"\n", a...)
	os.Exit(2)
}

// ---------------------------------------------------------------------------------------------------------------------
// Results

type result struct {
	Path   string `json:"path"`
	Status int    `json:"status"`
	Bytes  int64  `json:"bytes"`
	Sent   int64  `json:"sent,omitempty"`
	Sha256 string `json:"sha256"`
	Ms     int64  `json:"ms"`
	Error  string `json:"error,omitempty"`
	Body   string `json:"body,omitempty"`
	done   bool
}

type totals struct {
	Requests    int     `json:"requests"`
	Ok          int     `json:"ok"`
	Failed      int     `json:"failed"`
	Bytes       int64   `json:"bytes"`
	BytesSent   int64   `json:"bytesSent"`
	HandshakeMs float64 `json:"handshakeMs"`
	WallMs      float64 `json:"wallMs"`
	MBPerSec    float64 `json:"mbPerSec"`
}

type report struct {
	Requests []*result `json:"requests"`
	Totals   totals    `json:"totals"`
	ALPN     string    `json:"alpn,omitempty"`
	Cipher   string    `json:"cipher,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// dialer wraps quic.DialAddrEarlyContext to time the handshake and keep the connection for its TLS state.
type dialer struct {
	mu          sync.Mutex
	dials       int
	conn        quic.EarlyConnection
	dialStart   time.Time
	handshakeMs float64
}

func (d *dialer) dial(ctx context.Context, addr string, tlsCfg *tls.Config, cfg *quic.Config) (quic.EarlyConnection, error) {
	d.mu.Lock()
	d.dials++
	d.dialStart = time.Now()
	d.mu.Unlock()
	conn, err := quic.DialAddrEarlyContext(ctx, addr, tlsCfg, cfg)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.conn = conn
	d.mu.Unlock()
	go func() {
		select {
		case <-conn.HandshakeComplete().Done():
			d.mu.Lock()
			d.handshakeMs = float64(time.Since(d.dialStart).Microseconds()) / 1000
			d.mu.Unlock()
		case <-conn.Context().Done():
		}
	}()
	return conn, nil
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func main() {
	n := flag.Int("n", 0, "total requests, cycling through the URLs (default: one per URL)")
	conc := flag.Int("c", 10, "at most this many requests in flight at a time")
	method := flag.String("X", "", "request method (default GET, or POST with -d)")
	dataFile := flag.String("d", "", "stream `FILE` as each request's body (with content-length)")
	var headers listFlag
	flag.Var(&headers, "H", "request header 'name: value', repeatable")
	caFile := flag.String("ca", "", "trust only this CA / certificate `FILE` (PEM)")
	insecure := flag.Bool("insecure", false, "do not verify the server certificate")
	serverName := flag.String("server-name", "", "SNI and the name to verify (default: the URL host)")
	keylog := flag.String("keylog", "", "append TLS secrets to `FILE` (NSS key log format)")
	timeout := flag.Duration("timeout", 60*time.Second, "give up on the whole run after this long")
	hsTimeout := flag.Duration("handshake-timeout", 10*time.Second, "QUIC handshake idle timeout")
	idle := flag.Duration("idle-timeout", 30*time.Second, "QUIC idle timeout")
	preview := flag.Int("body-preview", 0, "put the first `N` bytes of each response body into its result as \"body\"")
	var ics, ms, icc, mc sizeFlag
	flag.Var(&ics, "initial-stream-window", "initial stream receive window, `BYTES` (e.g. 16K; quic-go default 512K, auto-tuned)")
	flag.Var(&ms, "max-stream-window", "largest stream receive window the auto-tuning may reach, `BYTES` (default 6M)")
	flag.Var(&icc, "initial-conn-window", "initial connection receive window, `BYTES` (quic-go default 768K, auto-tuned)")
	flag.Var(&mc, "max-conn-window", "largest connection receive window, `BYTES` (default 15M)")
	flag.Parse()

	urls := flag.Args()
	if len(urls) == 0 {
		usage("no URL given")
	}
	var origin string
	paths := make([]string, len(urls))
	for i, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			usage("URL %q: want https://HOST:PORT/PATH", raw)
		}
		h := u.Hostname()
		if h != "127.0.0.1" && h != "::1" && h != "localhost" {
			usage("URL %q: only loopback hosts (127.0.0.1, [::1], localhost)", raw)
		}
		if origin == "" {
			origin = u.Host
		} else if u.Host != origin {
			usage("URL %q: all URLs must be on one origin (%s) to share one connection", raw, origin)
		}
		paths[i] = u.RequestURI()
	}
	if *n == 0 {
		*n = len(urls)
	}
	if *n < 0 {
		usage("-n must be positive")
	}
	if *conc < 1 {
		usage("-c must be at least 1")
	}
	if *insecure && *caFile != "" {
		usage("-insecure and -ca exclude each other")
	}
	m := *method
	if m == "" {
		m = http.MethodGet
		if *dataFile != "" {
			m = http.MethodPost
		}
	}
	var bodySize int64 = -1
	if *dataFile != "" {
		st, err := os.Stat(*dataFile)
		if err != nil || !st.Mode().IsRegular() {
			usage("-d %q is not a readable file", *dataFile)
		}
		bodySize = st.Size()
	}
	hdr := http.Header{}
	for _, h := range headers {
		i := strings.IndexByte(h, ':')
		if i <= 0 {
			usage("-H %q: want 'name: value'", h)
		}
		hdr.Add(strings.TrimSpace(h[:i]), strings.TrimSpace(h[i+1:]))
	}
	isw, msw, err := window("stream", ics, ms, defaultInitialStreamWindow, defaultMaxStreamWindow)
	if err != nil {
		usage("%v", err)
	}
	icw, mcw, err := window("conn", icc, mc, defaultInitialConnWindow, defaultMaxConnWindow)
	if err != nil {
		usage("%v", err)
	}

	tlsConf := &tls.Config{ServerName: *serverName, InsecureSkipVerify: *insecure, MinVersion: tls.VersionTLS13}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			usage("-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			usage("-ca %q: no PEM certificate in it", *caFile)
		}
		tlsConf.RootCAs = pool
	}
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
		HandshakeIdleTimeout:           *hsTimeout,
		MaxIdleTimeout:                 *idle,
		InitialStreamReceiveWindow:     isw,
		MaxStreamReceiveWindow:         msw,
		InitialConnectionReceiveWindow: icw,
		MaxConnectionReceiveWindow:     mcw,
	}
	d := &dialer{}
	rt := &http3.RoundTripper{TLSClientConfig: tlsConf, QuicConfig: qconf, DisableCompression: true, Dial: d.dial}
	client := &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	rep := &report{Requests: make([]*result, *n)}
	var mu sync.Mutex // guards rep.Requests[i] contents while workers run
	for i := range rep.Requests {
		rep.Requests[i] = &result{Path: paths[i%len(paths)]}
	}

	one := func(i int) {
		r := &result{Path: paths[i%len(paths)]}
		t0 := time.Now()
		defer func() {
			r.Ms = time.Since(t0).Milliseconds()
			r.done = true
			mu.Lock()
			rep.Requests[i] = r
			mu.Unlock()
		}()
		var body io.ReadCloser = http.NoBody
		var sent *countingReader
		defer func() {
			if sent != nil {
				r.Sent = atomic.LoadInt64(&sent.n)
			}
		}()
		if *dataFile != "" {
			f, err := os.Open(*dataFile)
			if err != nil {
				r.Error = "request body: " + err.Error()
				return
			}
			if bodySize > 0 {
				sent = &countingReader{f: f}
				body = sent
			} else {
				f.Close()
			}
		}
		req, err := http.NewRequestWithContext(ctx, m, urls[i%len(urls)], body)
		if err != nil {
			body.Close()
			r.Error = err.Error()
			return
		}
		if bodySize >= 0 {
			req.ContentLength = bodySize
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		// A request cut by the run's deadline says so, whatever quic-go's error for it (a cancelled stream) is.
		why := func(err error) string {
			if ctx.Err() != nil {
				return fmt.Sprintf("cut by -timeout %s (%v)", timeout.String(), err)
			}
			return err.Error()
		}
		resp, err := client.Do(req)
		if err != nil {
			r.Error = why(err)
			return
		}
		defer resp.Body.Close()
		r.Status = resp.StatusCode
		h := sha256.New()
		var w io.Writer = h
		var pv *previewWriter
		if *preview > 0 {
			pv = &previewWriter{max: *preview}
			w = io.MultiWriter(h, pv)
		}
		r.Bytes, err = io.CopyBuffer(w, resp.Body, make([]byte, 64<<10))
		r.Sha256 = hex.EncodeToString(h.Sum(nil))
		if pv != nil {
			r.Body = string(pv.buf)
		}
		if err != nil {
			r.Error = fmt.Sprintf("response body failed after %d bytes: %s", r.Bytes, why(err))
		} else if resp.ContentLength >= 0 && m != http.MethodHead && r.Bytes != resp.ContentLength {
			r.Error = fmt.Sprintf("response body has %d bytes, content-length says %d", r.Bytes, resp.ContentLength)
		}
	}

	start := time.Now()
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for i := 0; i < *n; i++ {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	workers := *conc
	if workers > *n {
		workers = *n
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				one(i)
			}
		}()
	}
	allDone := make(chan struct{})
	go func() { wg.Wait(); close(allDone) }()
	timedOut := false
	unfinished := 0
	select {
	case <-allDone:
	case <-ctx.Done():
		timedOut = true
		unfinished = countUnfinished(rep, &mu)
		// The requests see their context cancelled; give them a moment to record that, then report regardless.
		select {
		case <-allDone:
		case <-time.After(2 * time.Second):
		}
	}
	wall := time.Since(start)

	mu.Lock()
	var firstErr string
	for _, r := range rep.Requests {
		if !r.done && r.Error == "" {
			r.Error = "not finished before the end of the run"
		}
		if r.Error == "" && r.Status > 0 && r.Status < 400 {
			rep.Totals.Ok++
		} else {
			rep.Totals.Failed++
			if firstErr == "" {
				if r.Error != "" {
					firstErr = fmt.Sprintf("%s: %s", r.Path, r.Error)
				} else {
					firstErr = fmt.Sprintf("%s: status %d", r.Path, r.Status)
				}
			}
		}
		rep.Totals.Bytes += r.Bytes
		rep.Totals.BytesSent += r.Sent
	}
	mu.Unlock()
	rep.Totals.Requests = *n
	rep.Totals.WallMs = round1(float64(wall.Microseconds()) / 1000)
	if wall > 0 {
		rep.Totals.MBPerSec = round1(float64(rep.Totals.Bytes+rep.Totals.BytesSent) / 1e6 / wall.Seconds())
	}
	d.mu.Lock()
	rep.Totals.HandshakeMs = d.handshakeMs
	conn, dials := d.conn, d.dials
	d.mu.Unlock()
	if conn != nil {
		st := conn.ConnectionState().TLS
		rep.ALPN = st.NegotiatedProtocol
		if st.CipherSuite != 0 {
			rep.Cipher = tls.CipherSuiteName(st.CipherSuite)
		}
	}
	switch {
	case timedOut:
		rep.Error = fmt.Sprintf("timeout: stopped after %s (-timeout) with %d of %d requests not done", timeout.String(), unfinished, *n)
	case dials > 1:
		rep.Error = fmt.Sprintf("%d QUIC connections were dialled, want 1", dials)
	case firstErr != "" && rep.Totals.HandshakeMs == 0:
		rep.Error = "QUIC handshake did not complete: " + firstErr
	case firstErr != "":
		rep.Error = firstErr
	}
	out, _ := json.Marshal(rep)
	os.Stdout.Write(append(out, '\n'))
	// Close the connection (CONNECTION_CLOSE H3_NO_ERROR) unless requests are still stuck on it.
	if !timedOut {
		_ = rt.Close()
	}
	if rep.Error != "" || rep.Totals.Failed > 0 {
		os.Exit(1)
	}
}

func countUnfinished(rep *report, mu *sync.Mutex) int {
	mu.Lock()
	defer mu.Unlock()
	c := 0
	for _, r := range rep.Requests {
		if !r.done {
			c++
		}
	}
	return c
}

// countingReader counts the request body bytes quic-go's sender goroutine has read from the file.
type countingReader struct {
	f *os.File
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	m, err := c.f.Read(p)
	atomic.AddInt64(&c.n, int64(m))
	return m, err
}

func (c *countingReader) Close() error { return c.f.Close() }

// previewWriter keeps the first max bytes written to it.
type previewWriter struct {
	max int
	buf []byte
}

func (p *previewWriter) Write(b []byte) (int, error) {
	if room := p.max - len(p.buf); room > 0 {
		if room > len(b) {
			room = len(b)
		}
		p.buf = append(p.buf, b[:room]...)
	}
	return len(b), nil
}
