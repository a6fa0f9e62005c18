package k8stest

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
	"time"
)

// serviceClusterIPRange is the apiserver's service range; its first address
// is the kubernetes Service's ClusterIP, which the serving cert names.
const (
	serviceClusterIPRange = "10.96.0.0/16"
	kubernetesServiceIP   = "10.96.0.1"
	adminUser             = "k8stest-admin"
)

// pkiFiles are the PEM files of a cluster's self-made PKI.
type pkiFiles struct {
	caCert, caKey         string // cluster CA (signs serving and client certs)
	servingCert, servKey  string // kube-apiserver serving cert for 127.0.0.1
	adminCert, adminKey   string // client cert: CN k8stest-admin, O system:masters
	saKey, saPub          string // service-account token signing key pair
	caPEM, adminPEM, admK []byte // contents, for rest.Config
}

// writePKI generates a CA, an apiserver serving cert, an admin client cert
// and a service-account signing key (all ECDSA P-256) into dir.
func writePKI(dir string) (*pkiFiles, error) {
	ca, err := newCA(time.Now())
	if err != nil {
		return nil, err
	}
	servCert, servKey, err := ca.leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback, net.ParseIP(kubernetesServiceIP)},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	})
	if err != nil {
		return nil, fmt.Errorf("serving cert: %w", err)
	}
	adminCert, adminKey, err := ca.leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: adminUser, Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("admin cert: %w", err)
	}
	saKey, saPub, err := signingKeyPair()
	if err != nil {
		return nil, err
	}
	p := &pkiFiles{
		caCert:      filepath.Join(dir, "ca.crt"),
		caKey:       filepath.Join(dir, "ca.key"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servKey:     filepath.Join(dir, "apiserver.key"),
		adminCert:   filepath.Join(dir, "admin.crt"),
		adminKey:    filepath.Join(dir, "admin.key"),
		saKey:       filepath.Join(dir, "sa.key"),
		saPub:       filepath.Join(dir, "sa.pub"),
		caPEM:       ca.certPEM,
		adminPEM:    adminCert,
		admK:        adminKey,
	}
	for path, data := range map[string][]byte{
		p.caCert:      p.caPEM,
		p.caKey:       ca.keyPEM,
		p.servingCert: servCert,
		p.servKey:     servKey,
		p.adminCert:   adminCert,
		p.adminKey:    adminKey,
		p.saKey:       saKey,
		p.saPub:       saPub,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// testCA is the cluster CA: it signs the serving and client certs.
type testCA struct {
	now             time.Time
	key             *ecdsa.PrivateKey
	cert            *x509.Certificate
	certPEM, keyPEM []byte
}

// newCA makes a self-signed CA valid from an hour before now for ten days.
func newCA(now time.Time) (*testCA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "k8stest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &testCA{now: now, key: key, cert: cert, certPEM: pemOf("CERTIFICATE", der), keyPEM: pemOf("EC PRIVATE KEY", kder)}, nil
}

// leaf signs tmpl (with a new key, a serial and the CA's validity) and returns cert and key as PEM.
func (c *testCA) leaf(tmpl *x509.Certificate) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = c.now.Add(-time.Hour)
	tmpl.NotAfter = c.now.Add(10 * 24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pemOf("CERTIFICATE", der), pemOf("EC PRIVATE KEY", kder), nil
}

// signingKeyPair makes the service-account token signing key: private and public key as PEM.
func signingKeyPair() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return pemOf("EC PRIVATE KEY", der), pemOf("PUBLIC KEY", pub), nil
}

func pemOf(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}
