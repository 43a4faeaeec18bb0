package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"redial/internal/testenv"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// and its key to certFile and keyFile, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "redial.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: ipLoopback()}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestServesHTTPSAndReloadsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	log := slog.New(slog.DiscardHandler)

	if _, err := New(Config{Addr: "127.0.0.1:0", TLSCert: certFile}, Deps{Logger: log}); err == nil {
		t.Fatal("a certificate without its key accepted")
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", TLSCert: certFile, TLSKey: certFile}, Deps{Logger: log}); err == nil || !strings.Contains(err.Error(), certFile) {
		t.Fatalf("a certificate as its own key: %v", err)
	}

	s, err := New(Config{Addr: "127.0.0.1:0", TLSCert: certFile, TLSKey: keyFile}, Deps{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	s.HandlePublic("GET /hello", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls=%v", r.TLS != nil)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// get fetches /hello on a new connection and returns the serial of
	// the certificate the server showed.
	get := func() (int64, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + s.Addr() + "/hello")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if string(body) != "tls=true" {
			return 0, fmt.Errorf("body %q", body)
		}
		return resp.TLS.PeerCertificates[0].SerialNumber.Int64(), nil
	}
	var serial int64
	testenv.WaitFor(t, 5*time.Second, func() (err error) {
		serial, err = get()
		return err
	})
	if serial != first.SerialNumber.Int64() {
		t.Fatalf("served certificate %d, want %d", serial, first.SerialNumber.Int64())
	}

	// A renewed certificate is served once the files are checked again,
	// and a broken renewal keeps the one in use.
	os.WriteFile(keyFile, []byte("not a key"), 0o600)
	s.certs.mu.Lock()
	s.certs.checked = time.Time{}
	s.certs.mu.Unlock()
	if serial, err = get(); err != nil || serial != 1 {
		t.Fatalf("after a broken renewal: serial %d, %v", serial, err)
	}
	writeCert(t, certFile, keyFile, 2)
	// Modification times may not tick between the writes.
	later := time.Now().Add(time.Minute)
	os.Chtimes(certFile, later, later)
	s.certs.mu.Lock()
	s.certs.checked = time.Time{}
	s.certs.mu.Unlock()
	if serial, err = get(); err != nil || serial != 2 {
		t.Fatalf("after renewal: serial %d, %v", serial, err)
	}
}

func ipLoopback() []net.IP { return []net.IP{net.IPv4(127, 0, 0, 1)} }
