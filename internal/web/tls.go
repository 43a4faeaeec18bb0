package web

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certReloadEvery is how often the certificate files are checked for a
// renewal: a renewed certificate is taken without a restart, which would
// drop every agent's WebSocket.
const certReloadEvery = time.Minute

// certFiles serves the certificate of --tls-cert/--tls-key, reloading it
// when either file changes; a reload that fails keeps the certificate in
// use (and logs why).
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time // modification times of the loaded files
	checked time.Time
}

func loadCertFiles(certFile, keyFile string, log *slog.Logger) (*certFiles, error) {
	c := &certFiles{certFile: certFile, keyFile: keyFile, log: log}
	stamp, err := c.stamps()
	if err == nil {
		err = c.load(stamp)
	}
	if err != nil {
		return nil, fmt.Errorf("web: tls certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return c, nil
}

func (c *certFiles) stamps() ([2]time.Time, error) {
	var s [2]time.Time
	for i, f := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return s, err
		}
		s[i] = fi.ModTime()
	}
	return s, nil
}

// load reads the pair; c.mu is held (or c is not shared yet).
func (c *certFiles) load(stamp [2]time.Time) error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return err
	}
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) < certReloadEvery {
		return c.cert, nil
	}
	c.checked = time.Now()
	stamp, err := c.stamps()
	if err == nil && stamp != c.stamp {
		if err = c.load(stamp); err == nil {
			c.log.Info("web: tls certificate reloaded", "cert", c.certFile)
		}
	}
	if err != nil {
		c.log.Warn("web: tls certificate not reloaded, keeping the one in use", "cert", c.certFile, "key", c.keyFile, "error", err)
	}
	return c.cert, nil
}
