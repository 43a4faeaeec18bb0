package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate and its key as PEM files.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redial.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"redial.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSFlags(t *testing.T) {
	cert, key := writeCert(t)
	n, err := parse(t, []string{"--tls-cert", cert, "--tls-key", key, "--http", "0.0.0.0:8443", "--sip-public-ip", "192.0.2.7"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.TLSCert != cert || n.TLSKey != key {
		t.Fatalf("tls files: %q %q", n.TLSCert, n.TLSKey)
	}
	if n.HTTPPublicURL != "https://192.0.2.7:8443" {
		t.Fatalf("default public URL with TLS: %q", n.HTTPPublicURL)
	}

	other, _ := writeCert(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tls-cert", cert}, "give both or neither"},
		{[]string{"--tls-key", key}, "give both or neither"},
		{[]string{"--tls-cert", cert, "--tls-key", filepath.Join(t.TempDir(), "missing.pem")}, "missing.pem"},
		{[]string{"--tls-cert", key, "--tls-key", key}, "--tls-cert"},
		{[]string{"--tls-cert", other, "--tls-key", key}, "private key does not match"},
	} {
		_, err := parse(t, tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "REDIAL_TLS_CERT") {
			t.Errorf("%q: %v, want an error naming the flag and %q", tc.args, err, tc.want)
		}
	}
	t.Run("env", func(t *testing.T) {
		if n, err := parse(t, nil, map[string]string{"REDIAL_TLS_CERT": cert, "REDIAL_TLS_KEY": key}); err != nil || n.TLSKey != key {
			t.Fatalf("tls from env: %v %+v", err, n)
		}
	})
}
