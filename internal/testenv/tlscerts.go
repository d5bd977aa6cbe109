package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// TLSFiles are a test CA and, as PEM files it signed, a server certificate
// for localhost and 127.0.0.1 and a client certificate, for servers (NATS,
// PostgreSQL) that require TLS with client certificates. More client
// certificates come from IssueClient.
type TLSFiles struct {
	CA, ServerCert, ServerKey, ClientCert, ClientKey string

	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial *atomic.Int64
}

// NewTLSFiles writes a fresh CA, a server certificate and a client
// certificate whose common name is clientCN into dir. PostgreSQL's `cert`
// authentication and clientcert=verify-full take the common name as the
// user name, so for PostgreSQL clientCN is the user's name.
func NewTLSFiles(dir, clientCN string) (TLSFiles, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pgflo test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return TLSFiles{}, fmt.Errorf("parse CA certificate: %w", err)
	}
	f := TLSFiles{dir: dir, ca: ca, caKey: caKey, serial: &atomic.Int64{}}
	f.serial.Store(1)
	if f.CA, err = writePEM(dir, "ca.pem", "CERTIFICATE", caDER); err != nil {
		return TLSFiles{}, err
	}
	if f.ServerCert, f.ServerKey, err = f.issue("server", "localhost", x509.ExtKeyUsageServerAuth,
		[]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return TLSFiles{}, err
	}
	if f.ClientCert, f.ClientKey, err = f.IssueClient(clientCN); err != nil {
		return TLSFiles{}, err
	}
	return f, nil
}

// WriteTLSFiles is NewTLSFiles into a temp dir of the test.
func WriteTLSFiles(t testing.TB, clientCN string) TLSFiles {
	t.Helper()
	f, err := NewTLSFiles(t.TempDir(), clientCN)
	if err != nil {
		t.Fatalf("write TLS files: %v", err)
	}
	return f
}

// IssueClient writes another client certificate of the CA, for common name
// cn (a PostgreSQL user), and returns the paths of the certificate and its key.
func (f TLSFiles) IssueClient(cn string) (cert, key string, err error) {
	return f.issue("client-"+cn, cn, x509.ExtKeyUsageClientAuth, nil, nil)
}

// issue writes a certificate for common name cn, signed by the CA, and its
// key, as name.pem and name-key.pem.
func (f TLSFiles) issue(name, cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (cert, key string, err error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", fmt.Errorf("generate key of %s: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(f.serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: dns, IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, &k.PublicKey, f.caKey)
	if err != nil {
		return "", "", fmt.Errorf("create certificate of %s: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return "", "", fmt.Errorf("marshal key of %s: %w", name, err)
	}
	if cert, err = writePEM(f.dir, name+".pem", "CERTIFICATE", der); err != nil {
		return "", "", err
	}
	if key, err = writePEM(f.dir, name+"-key.pem", "PRIVATE KEY", keyDER); err != nil {
		return "", "", err
	}
	return cert, key, nil
}

// writePEM writes der as one PEM block, private to its owner: PostgreSQL
// refuses a key file others can read.
func writePEM(dir, name, kind string, der []byte) (string, error) {
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}
