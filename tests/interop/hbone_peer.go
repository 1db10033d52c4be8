// hbone_peer is an independent HBONE peer (HTTP/2 CONNECT over mutual TLS 1.3)
// used to test ztunnel-c for interoperability. It uses only Go's standard
// library, so that it shares no code and no TLS or HTTP/2 stack with the C
// implementation it checks.
//
// At start it mints its own P-256 leaf certificate, signed by the CA of an
// Istio "cacerts" directory, carrying one SPIFFE URI SAN, and it trusts the
// directory's root-cert.pem.
//
//	hbone_peer server -ca-dir D -id spiffe://td/ns/n/sa/s -listen IP:PORT
//	hbone_peer client -ca-dir D -id spiffe://td/ns/n/sa/s -connect IP:PORT \
//	    -authority IP:PORT -expect-id spiffe://... [-listen IP:PORT]
//	hbone_peer client ... -count N [-first K] [-parallel P] [-H 'baggage: k=v{i}']
//
// With -count, the client opens N tunnels over its one HTTP/2 connection,
// P at a time, each ending its request with its headers and reading the
// reply to its end; "{i}" in a -H value becomes the tunnel's number (K,
// K+1, ...). It prints "ok=<n> failed=<n>" and exits 0 only if every tunnel
// was answered 200.
//
// With -describe, the server dials nothing: it answers every CONNECT 200
// and writes back one line, "server=<own id> authority=<:authority>
// peer=<client id>", then ends the stream (a stand-in for a waypoint that
// shows what reached it).
//
// -serial HEX gives the leaf that serial number instead of a random one (a
// test can then revoke it in a CRL).
//
// Exit codes: 0 success, 1 usage or setup error, 2 dial/TLS/HTTP/2 failure,
// 3 CONNECT answered with a status other than 200, 4 overall deadline hit.
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	exitOK       = 0
	exitSetup    = 1
	exitTransfer = 2
	exitStatus   = 3
	exitTimeout  = 4

	copyBufSize = 64 * 1024
)

// headerList collects repeated -H "name: value" flags.
type headerList []string

func (h *headerList) String() string     { return strings.Join(*h, ", ") }
func (h *headerList) Set(v string) error { *h = append(*h, v); return nil }

type options struct {
	mode        string
	caDir       string
	id          string
	listen      string
	connect     string
	authority   string
	expectID    string
	timeout     time.Duration
	dialTimeout time.Duration
	once        bool
	forceStatus int
	headers     headerList
	count       int
	first       int
	parallel    int
	serial      string
	describe    bool
	forward     string
}

func logf(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "hbone_peer: "+format+"\n", args...)
}

func fatalf(code int, format string, args ...interface{}) {
	logf(format, args...)
	os.Exit(code)
}

// spiffeID is the parsed form of spiffe://<td>/ns/<ns>/sa/<sa>.
type spiffeID struct {
	trustDomain, namespace, serviceAccount string
}

func (s spiffeID) String() string {
	return "spiffe://" + s.trustDomain + "/ns/" + s.namespace + "/sa/" + s.serviceAccount
}

// parseSpiffe applies the same strict rule as ztunnel: the spiffe:// prefix,
// then exactly five '/'-separated parts with "ns" and "sa" in places 1 and 3.
func parseSpiffe(s string) (spiffeID, error) {
	const prefix = "spiffe://"
	if !strings.HasPrefix(s, prefix) {
		return spiffeID{}, fmt.Errorf("identity %q lacks the spiffe:// prefix", s)
	}
	parts := strings.Split(s[len(prefix):], "/")
	if len(parts) != 5 || parts[1] != "ns" || parts[3] != "sa" ||
		parts[0] == "" || parts[2] == "" || parts[4] == "" {
		return spiffeID{}, fmt.Errorf("identity %q is not spiffe://td/ns/NS/sa/SA", s)
	}
	return spiffeID{parts[0], parts[2], parts[4]}, nil
}

// certSpiffeIDs returns every parseable SPIFFE identity in the URI SANs.
func certSpiffeIDs(c *x509.Certificate) []spiffeID {
	var ids []spiffeID
	for _, u := range c.URIs {
		if id, err := parseSpiffe(u.String()); err == nil {
			ids = append(ids, id)
		}
	}
	return ids
}

func readPEMBlocks(path string) ([]*pem.Block, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("%s: no PEM blocks", path)
	}
	return blocks, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	blocks, err := readPEMBlocks(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", path, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificates", path)
	}
	return certs, nil
}

// readKey accepts PKCS#1 RSA, SEC1 EC and PKCS#8 keys.
func readKey(path string) (crypto.Signer, error) {
	blocks, err := readPEMBlocks(path)
	if err != nil {
		return nil, err
	}
	for _, b := range blocks {
		switch b.Type {
		case "RSA PRIVATE KEY":
			return x509.ParsePKCS1PrivateKey(b.Bytes)
		case "EC PRIVATE KEY":
			return x509.ParseECPrivateKey(b.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, err
			}
			switch key := k.(type) {
			case *rsa.PrivateKey:
				return key, nil
			case *ecdsa.PrivateKey:
				return key, nil
			default:
				return nil, fmt.Errorf("%s: unsupported key type %T", path, k)
			}
		}
	}
	return nil, fmt.Errorf("%s: no private key", path)
}

// identity is what a peer presents and trusts.
type identity struct {
	id    spiffeID
	cert  tls.Certificate
	roots *x509.CertPool
}

// loadIdentity mints a P-256 leaf for id, signed by the CA in caDir. The chain
// sent is leaf + intermediates (ca-cert.pem and cert-chain.pem minus anything
// that is a root), as ztunnel sends it.
func loadIdentity(caDir, idStr, serialHex string) (*identity, error) {
	id, err := parseSpiffe(idStr)
	if err != nil {
		return nil, err
	}
	caCerts, err := readCerts(filepath.Join(caDir, "ca-cert.pem"))
	if err != nil {
		return nil, err
	}
	caKey, err := readKey(filepath.Join(caDir, "ca-key.pem"))
	if err != nil {
		return nil, err
	}
	rootCerts, err := readCerts(filepath.Join(caDir, "root-cert.pem"))
	if err != nil {
		return nil, err
	}
	var chainCerts []*x509.Certificate
	if _, err := os.Stat(filepath.Join(caDir, "cert-chain.pem")); err == nil {
		if chainCerts, err = readCerts(filepath.Join(caDir, "cert-chain.pem")); err != nil {
			return nil, err
		}
	}
	roots := x509.NewCertPool()
	isRoot := func(c *x509.Certificate) bool {
		for _, r := range rootCerts {
			if r.Equal(c) {
				return true
			}
		}
		return false
	}
	for _, r := range rootCerts {
		roots.AddCert(r)
	}
	ca := caCerts[0]

	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	if serialHex != "" {
		var ok bool
		if serial, ok = new(big.Int).SetString(serialHex, 16); !ok || serial.Sign() <= 0 {
			return nil, fmt.Errorf("-serial %q: expected a positive hex number", serialHex)
		}
	}
	u, err := url.Parse(id.String())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(24 * time.Hour)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	// An empty subject makes crypto/x509 mark the SAN extension critical,
	// which is what Istio's certificates look like.
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{u},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing leaf: %v", err)
	}
	chain := [][]byte{der}
	seen := map[string]bool{}
	for _, c := range append(caCerts, chainCerts...) {
		if isRoot(c) || seen[string(c.Raw)] {
			continue
		}
		seen[string(c.Raw)] = true
		chain = append(chain, c.Raw)
	}
	leaf, _ := x509.ParseCertificate(der)
	return &identity{
		id:    id,
		cert:  tls.Certificate{Certificate: chain, PrivateKey: leafKey, Leaf: leaf},
		roots: roots,
	}, nil
}

// verifyChain validates rawCerts (leaf first) against roots, without any
// host name check, for the given purpose.
func verifyChain(rawCerts [][]byte, roots *x509.CertPool, usage x509.ExtKeyUsage) (*x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return nil, errors.New("peer sent no certificate")
	}
	certs := make([]*x509.Certificate, 0, len(rawCerts))
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return nil, fmt.Errorf("peer certificate: %v", err)
		}
		certs = append(certs, c)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

func peerIDString(state *tls.ConnectionState) string {
	if state == nil || len(state.PeerCertificates) == 0 {
		return "-"
	}
	ids := certSpiffeIDs(state.PeerCertificates[0])
	if len(ids) == 0 {
		return "-"
	}
	return ids[0].String()
}

// ---- server ----

func serverTLSConfig(me *identity) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		MaxVersion:   tls.VersionTLS13,
		NextProtos:   []string{"h2"},
		Certificates: []tls.Certificate{me.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    me.roots,
		// The chain was verified by crypto/tls already; what is left is the
		// mesh rule that the client belongs to our trust domain.
		VerifyPeerCertificate: func(raw [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || len(chains[0]) == 0 {
				return errors.New("no verified client chain")
			}
			for _, id := range certSpiffeIDs(chains[0][0]) {
				if id.trustDomain == me.id.trustDomain {
					return nil
				}
			}
			err := fmt.Errorf("client certificate has no SPIFFE identity in trust domain %q",
				me.id.trustDomain)
			logf("reject handshake: %v", err)
			return err
		},
	}
}

type hboneServer struct {
	opts    *options
	streams int64
	done    chan struct{}
	once    sync.Once
}

func writeFlush(w http.ResponseWriter, p []byte) error {
	if _, err := w.Write(p); err != nil {
		return err
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

func (s *hboneServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	peer := peerIDString(r.TLS)
	status := 0
	var up, down int64
	defer func() {
		logf("stream peer=%s authority=%s method=%s status=%d up=%d down=%d ms=%d forwarded=%q baggage=%q traceparent=%q",
			peer, r.Host, r.Method, status, atomic.LoadInt64(&up), atomic.LoadInt64(&down),
			time.Since(start).Milliseconds(), r.Header.Get("Forwarded"), r.Header.Get("Baggage"),
			r.Header.Get("Traceparent"))
		atomic.AddInt64(&s.streams, 1)
		if s.opts.once {
			s.once.Do(func() { close(s.done) })
		}
	}()
	if r.ProtoMajor != 2 || r.Method != http.MethodConnect {
		status = http.StatusBadRequest
		w.WriteHeader(status)
		return
	}
	if s.opts.forceStatus != 0 {
		status = s.opts.forceStatus
		w.WriteHeader(status)
		return
	}
	if _, _, err := net.SplitHostPort(r.Host); err != nil {
		status = http.StatusBadRequest
		w.WriteHeader(status)
		return
	}
	if s.opts.describe {
		status = http.StatusOK
		describeStream(w, r, s.opts.id, peer)
		return
	}
	upstream, err := net.DialTimeout("tcp", upstreamAddr(s.opts, r), s.opts.dialTimeout)
	if err != nil {
		logf("upstream %s: %v", r.Host, err)
		status = http.StatusServiceUnavailable
		w.WriteHeader(status)
		return
	}
	defer upstream.Close()
	status = http.StatusOK
	w.WriteHeader(status)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}

	// Client -> upstream. END_STREAM from the client becomes a TCP
	// half-close toward the upstream; a reset closes the upstream.
	go func() {
		buf := make([]byte, copyBufSize)
		for {
			n, rerr := r.Body.Read(buf)
			if n > 0 {
				if _, werr := upstream.Write(buf[:n]); werr != nil {
					upstream.Close()
					return
				}
				atomic.AddInt64(&up, int64(n))
			}
			if rerr == io.EOF {
				if tc, ok := upstream.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
				return
			}
			if rerr != nil {
				upstream.Close()
				return
			}
		}
	}()

	// Upstream -> client, flushed per read so each TCP read becomes DATA
	// right away. Go's HTTP/2 server ends the response stream only when the
	// handler returns (and resets the request side if still open), so an
	// upstream EOF ends the whole stream: the closest Go permits.
	buf := make([]byte, copyBufSize)
	for {
		n, rerr := upstream.Read(buf)
		if n > 0 {
			if werr := writeFlush(w, buf[:n]); werr != nil {
				return
			}
			atomic.AddInt64(&down, int64(n))
		}
		if rerr != nil {
			return
		}
	}
}

// upstreamAddr is where a CONNECT's bytes go: its :authority, or with
// -forward a fixed address (a network gateway that passes a double-HBONE
// inner tunnel, still encrypted, to the ztunnel behind it).
func upstreamAddr(opts *options, r *http.Request) string {
	if opts.forward != "" {
		return opts.forward
	}
	return r.Host
}

// describeStream answers a CONNECT with 200 and one line saying who served
// it, what was asked for and who asked (-describe).
func describeStream(w http.ResponseWriter, r *http.Request, self, peer string) {
	w.WriteHeader(http.StatusOK)
	writeFlush(w, []byte(fmt.Sprintf("server=%s authority=%s peer=%s\n", self, r.Host, peer)))
}

func runServer(opts *options, me *identity) int {
	if opts.listen == "" {
		fatalf(exitSetup, "server needs -listen IP:PORT")
	}
	cfg := serverTLSConfig(me)
	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		fatalf(exitSetup, "listen %s: %v", opts.listen, err)
	}
	s := &hboneServer{opts: opts, done: make(chan struct{})}
	srv := &http.Server{
		Handler:   s,
		TLSConfig: cfg,
		ErrorLog:  nil,
	}
	logf("server %s listening on %s", me.id, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(tls.NewListener(ln, cfg)) }()
	select {
	case err := <-errc:
		logf("serve: %v", err)
		return exitTransfer
	case <-s.done:
		// Let the last response drain before closing connections.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		return exitOK
	}
}

// ---- client ----

type hboneClient struct {
	opts      *options
	me        *identity
	expected  []spiffeID
	transport *http.Transport
}

func (c *hboneClient) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		MaxVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		// No SNI is sent: ServerName stays empty. Chain and identity are
		// checked by hand below, since there is no host name to check.
		ServerName:             "",
		InsecureSkipVerify:     true,
		SessionTicketsDisabled: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &c.me.cert, nil
		},
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			leaf, err := verifyChain(raw, c.me.roots, x509.ExtKeyUsageServerAuth)
			if err != nil {
				logf("server chain rejected: %v", err)
				return err
			}
			got := certSpiffeIDs(leaf)
			for _, g := range got {
				for _, e := range c.expected {
					if g == e {
						return nil
					}
				}
			}
			err = fmt.Errorf("server identity %v does not match expected %v", got, c.expected)
			logf("%v", err)
			return err
		},
	}
}

func newClient(opts *options, me *identity) *hboneClient {
	c := &hboneClient{opts: opts, me: me}
	for _, e := range strings.Split(opts.expectID, ",") {
		id, err := parseSpiffe(strings.TrimSpace(e))
		if err != nil {
			fatalf(exitSetup, "-expect-id: %v", err)
		}
		c.expected = append(c.expected, id)
	}
	cfg := c.tlsConfig()
	c.transport = &http.Transport{
		ForceAttemptHTTP2:  true,
		DisableCompression: true,
		// The transport appends "http/1.1" to the ALPN list of the config it
		// is given; the dialer below uses its own copy, offering h2 only.
		TLSClientConfig: cfg.Clone(),
		// Every request goes to -connect whatever its URL says; the
		// transport pools the single HTTP/2 connection for us.
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: opts.dialTimeout}
			raw, err := d.DialContext(ctx, "tcp", opts.connect)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(raw, cfg)
			hctx, cancel := context.WithTimeout(ctx, opts.dialTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				raw.Close()
				return nil, err
			}
			if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
				tc.Close()
				return nil, fmt.Errorf("server negotiated ALPN %q, want h2", p)
			}
			return tc, nil
		},
	}
	return c
}

// open sends one CONNECT whose request body is fed from the returned pipe
// writer. It returns the response on status 200; otherwise an error and the
// status (0 when no response came).
func (c *hboneClient) open(ctx context.Context) (*io.PipeWriter, *http.Response, int, error) {
	pr, pw := io.Pipe()
	resp, status, err := c.send(ctx, 0, pr)
	if err != nil {
		pw.CloseWithError(err)
		return nil, nil, status, err
	}
	return pw, resp, status, nil
}

// send sends one CONNECT with "{i}" in the -H values replaced by i. With a
// nil body the request ends with its headers (END_STREAM), so the stream is
// never reset by us whichever side finishes first.
func (c *hboneClient) send(ctx context.Context, i int, body io.ReadCloser) (*http.Response, int, error) {
	var contentLength int64
	if body != nil {
		contentLength = -1
	}
	req := &http.Request{
		Method: http.MethodConnect,
		// The transport wants a scheme to pick TLS; for CONNECT the HTTP/2
		// encoder sends only :method and :authority (from Host).
		URL:           &url.URL{Scheme: "https", Host: c.opts.authority},
		Host:          c.opts.authority,
		Header:        http.Header{"User-Agent": []string{""}},
		Body:          body,
		ContentLength: contentLength,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
	}
	for _, h := range c.opts.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			fatalf(exitSetup, "-H %q: want 'name: value'", h)
		}
		v = strings.ReplaceAll(strings.TrimSpace(v), "{i}", fmt.Sprint(i))
		req.Header.Add(strings.TrimSpace(k), v)
	}
	req = req.WithContext(ctx)
	resp, err := c.transport.RoundTrip(req)
	if err != nil {
		return nil, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	}
	return resp, 200, nil
}

// splice runs both directions of one tunnel: src feeds the request body and
// the response body goes to dst. closeWrite is called when the response
// ends. It returns when the response has ended and the upload has finished
// or, at most grace later, given up.
func splice(src io.Reader, dst io.Writer, closeWrite func(), pw *io.PipeWriter,
	resp *http.Response, grace time.Duration) (int64, int64, error) {
	upDone := make(chan int64, 1)
	go func() {
		n, err := io.CopyBuffer(pw, src, make([]byte, copyBufSize))
		if err != nil {
			pw.CloseWithError(err)
		} else {
			pw.Close() // END_STREAM
		}
		upDone <- n
	}()
	var down int64
	var derr error
	buf := make([]byte, copyBufSize)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				derr = werr
				break
			}
			down += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			derr = rerr
			break
		}
	}
	resp.Body.Close()
	if closeWrite != nil {
		closeWrite()
	}
	var up int64
	select {
	case up = <-upDone:
	case <-time.After(grace):
		up = -1
	}
	return up, down, derr
}

func runClientStdio(c *hboneClient) int {
	pw, resp, status, err := c.open(context.Background())
	if err != nil {
		if status != 0 {
			logf("status %d", status)
			return exitStatus
		}
		logf("connect: %v", err)
		return exitTransfer
	}
	logf("tunnel established to %s via %s", c.opts.authority, c.opts.connect)
	_, _, derr := splice(os.Stdin, os.Stdout, nil, pw, resp, time.Second)
	if derr != nil {
		logf("tunnel: %v", derr)
		return exitTransfer
	}
	return exitOK
}

// runClientCount opens -count empty tunnels, -parallel at a time, and waits
// for each reply to end.
func runClientCount(c *hboneClient) int {
	var ok, failed int64
	next := int64(c.opts.first) - 1
	last := int64(c.opts.first + c.opts.count)
	var wg sync.WaitGroup
	for w := 0; w < c.opts.parallel || w == 0; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := atomic.AddInt64(&next, 1)
				if i >= last {
					return
				}
				resp, status, err := c.send(context.Background(), int(i), nil)
				if err != nil {
					logf("tunnel %d: status %d: %v", i, status, err)
					atomic.AddInt64(&failed, 1)
					continue
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					logf("tunnel %d: %v", i, err)
					atomic.AddInt64(&failed, 1)
					continue
				}
				atomic.AddInt64(&ok, 1)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("ok=%d failed=%d\n", ok, failed)
	if failed > 0 {
		return exitStatus
	}
	return exitOK
}

func runClientListen(c *hboneClient) int {
	ln, err := net.Listen("tcp", c.opts.listen)
	if err != nil {
		fatalf(exitSetup, "listen %s: %v", c.opts.listen, err)
	}
	logf("client listening on %s, tunnelling to %s via %s", ln.Addr(), c.opts.authority, c.opts.connect)
	for {
		conn, err := ln.Accept()
		if err != nil {
			logf("accept: %v", err)
			return exitTransfer
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		handle := func(conn net.Conn) int {
			defer conn.Close()
			pw, resp, status, err := c.open(context.Background())
			if err != nil {
				if status != 0 {
					logf("status %d", status)
					return exitStatus
				}
				logf("connect: %v", err)
				return exitTransfer
			}
			cw := func() {
				if tc, ok := conn.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}
			up, down, derr := splice(conn, conn, cw, pw, resp, 5*time.Second)
			logf("conn %s done up=%d down=%d err=%v", conn.RemoteAddr(), up, down, derr)
			if derr != nil {
				return exitTransfer
			}
			return exitOK
		}
		if c.opts.once {
			ln.Close()
			return handle(conn)
		}
		go handle(conn)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, `usage:
  hbone_peer server -ca-dir DIR -id SPIFFE -listen IP:PORT [-once] [-status N] [-describe] [-forward IP:PORT]
  hbone_peer client -ca-dir DIR -id SPIFFE -connect IP:PORT -authority IP:PORT
                    -expect-id SPIFFE[,SPIFFE...] [-listen IP:PORT] [-once] [-H 'k: v']
                    [-count N [-first K] [-parallel P]]
common: -timeout DUR (overall deadline, default 30s, 0 = none), -dial-timeout DUR
`)
	os.Exit(exitSetup)
}

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "server" && os.Args[1] != "client") {
		usage()
	}
	opts := &options{mode: os.Args[1]}
	fs := flag.NewFlagSet(opts.mode, flag.ExitOnError)
	fs.StringVar(&opts.caDir, "ca-dir", "", "Istio cacerts directory (ca-cert.pem, ca-key.pem, root-cert.pem[, cert-chain.pem])")
	fs.StringVar(&opts.id, "id", "", "own identity spiffe://td/ns/NS/sa/SA")
	fs.StringVar(&opts.listen, "listen", "", "listen address IP:PORT")
	fs.StringVar(&opts.connect, "connect", "", "client: HBONE server IP:PORT")
	fs.StringVar(&opts.authority, "authority", "", "client: CONNECT :authority IP:PORT")
	fs.StringVar(&opts.expectID, "expect-id", "", "client: accepted server identities, comma separated")
	fs.DurationVar(&opts.timeout, "timeout", 30*time.Second, "overall deadline; 0 disables")
	fs.DurationVar(&opts.dialTimeout, "dial-timeout", 5*time.Second, "TCP connect and TLS handshake timeout")
	fs.BoolVar(&opts.once, "once", false, "server: exit after one stream; client -listen: after one connection")
	fs.IntVar(&opts.forceStatus, "status", 0, "server: answer every CONNECT with this status without dialing")
	fs.Var(&opts.headers, "H", "client: extra request header 'name: value' (repeatable; {i} is the tunnel number with -count)")
	fs.StringVar(&opts.serial, "serial", "", "leaf serial number in hex (default: random)")
	fs.IntVar(&opts.count, "count", 0, "client: open this many empty tunnels, then exit")
	fs.IntVar(&opts.first, "first", 0, "client -count: number of the first tunnel")
	fs.IntVar(&opts.parallel, "parallel", 1, "client -count: tunnels open at a time")
	fs.BoolVar(&opts.describe, "describe", false, "server: answer 200 and write back 'server=ID authority=A peer=ID', dialing nothing")
	fs.StringVar(&opts.forward, "forward", "", "server: after 200, pipe each CONNECT stream to this TCP IP:PORT instead of its :authority")
	fs.Parse(os.Args[2:])
	if opts.caDir == "" || opts.id == "" {
		usage()
	}
	if opts.forceStatus != 0 && (opts.forceStatus < 100 || opts.forceStatus > 999) {
		fatalf(exitSetup, "-status %d out of range", opts.forceStatus)
	}
	if opts.timeout > 0 {
		time.AfterFunc(opts.timeout, func() {
			fatalf(exitTimeout, "deadline of %v reached", opts.timeout)
		})
	}
	me, err := loadIdentity(opts.caDir, opts.id, opts.serial)
	if err != nil {
		fatalf(exitSetup, "identity: %v", err)
	}
	switch opts.mode {
	case "server":
		os.Exit(runServer(opts, me))
	case "client":
		if opts.connect == "" || opts.authority == "" || opts.expectID == "" {
			usage()
		}
		if _, _, err := net.SplitHostPort(opts.authority); err != nil {
			fatalf(exitSetup, "-authority %q: %v", opts.authority, err)
		}
		c := newClient(opts, me)
		if opts.count > 0 {
			os.Exit(runClientCount(c))
		}
		if opts.listen != "" {
			os.Exit(runClientListen(c))
		}
		os.Exit(runClientStdio(c))
	}
}
