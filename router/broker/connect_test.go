package broker_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/social/user-events-router/configs"
	"github.com/social/user-events-router/router/broker"
)

// authMode is a server that demands one way of authenticating, the router
// configuration that satisfies it, and configurations it must refuse.
type authMode struct {
	server *server.Options
	good   configs.Config
	bad    []badCredentials
}

// badCredentials must fail to connect, with an error that names none of
// secrets. url, when set, replaces the server's URL (credentials in the URL).
type badCredentials struct {
	name    string
	cfg     configs.Config
	url     func(serverURL string) string
	wantErr error // nil: any error
	secrets []string
}

// TestConnectAuthModes starts a server for each way the router can
// authenticate (NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY_SEED,
// NATS_CREDS in operator mode, NATS_CA with NATS_CERT/NATS_KEY), checks that
// Connect gets through with the right settings, and that wrong or missing
// credentials are refused without the secret appearing in the error.
func TestConnectAuthModes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T) authMode
	}{
		{"user and password", userPasswordMode},
		{"token", tokenMode},
		{"nkey seed file", nkeyMode},
		{"creds file", credsMode},
		{"TLS with CA and client certificate", tlsMode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mode := tt.setup(t)
			url := startAuthServer(t, mode.server)

			nc, err := broker.Connect(url, mode.good, "connect-test", discardLogger())
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer nc.Close()
			// A round trip: the server accepted the connection, not just the socket.
			if err := nc.FlushTimeout(10 * time.Second); err != nil {
				t.Fatalf("flush: %v", err)
			}

			for _, bad := range mode.bad {
				t.Run(bad.name, func(t *testing.T) {
					t.Parallel()
					u := url
					if bad.url != nil {
						u = bad.url(url)
					}
					nc, err := broker.Connect(u, bad.cfg, "connect-test", discardLogger())
					if err == nil {
						nc.Close()
						t.Fatal("connected; want a refusal")
					}
					t.Logf("refused: %v", err)
					if bad.wantErr != nil && !errors.Is(err, bad.wantErr) {
						t.Errorf("err = %v, want %v", err, bad.wantErr)
					}
					for _, s := range bad.secrets {
						if strings.Contains(err.Error(), s) {
							t.Errorf("error %q reveals the secret %q", err, s)
						}
					}
				})
			}
		})
	}
}

func userPasswordMode(t *testing.T) authMode {
	password, wrong := rand.Text(), rand.Text()
	return authMode{
		server: &server.Options{Users: []*server.User{{Username: "router", Password: password}}},
		good:   withAuth(func(c *configs.Config) { c.NATSUser, c.NATSPassword = "router", password }),
		bad: []badCredentials{
			{
				name:    "wrong password",
				cfg:     withAuth(func(c *configs.Config) { c.NATSUser, c.NATSPassword = "router", wrong }),
				wantErr: nats.ErrAuthorization,
				secrets: []string{wrong, password},
			},
			{
				name:    "wrong password in the URL",
				cfg:     withAuth(nil),
				url:     func(u string) string { return strings.Replace(u, "nats://", "nats://router:"+wrong+"@", 1) },
				wantErr: nats.ErrAuthorization,
				secrets: []string{wrong, password},
			},
			{
				// The client's parse error (a url.Error) repeats the URL.
				name:    "password in a URL that does not parse",
				cfg:     withAuth(nil),
				url:     func(u string) string { return strings.Replace(u, "nats://", "nats://router:"+wrong+"%zz@", 1) },
				secrets: []string{wrong, password},
			},
			{name: "no credentials", cfg: withAuth(nil), wantErr: nats.ErrAuthorization, secrets: []string{password}},
		},
	}
}

func tokenMode(t *testing.T) authMode {
	token, wrong := rand.Text(), rand.Text()
	return authMode{
		server: &server.Options{Authorization: token},
		good:   withAuth(func(c *configs.Config) { c.NATSToken = token }),
		bad: []badCredentials{
			{
				name:    "wrong token",
				cfg:     withAuth(func(c *configs.Config) { c.NATSToken = wrong }),
				wantErr: nats.ErrAuthorization,
				secrets: []string{wrong, token},
			},
			{
				name:    "wrong token in the URL",
				cfg:     withAuth(nil),
				url:     func(u string) string { return strings.Replace(u, "nats://", "nats://"+wrong+"@", 1) },
				wantErr: nats.ErrAuthorization,
				secrets: []string{wrong, token},
				// NATS reads a URL user without a password as a token:
				// redact.URL must hide it like a password.
			},
			{
				name:    "user and password where a token is due",
				cfg:     withAuth(func(c *configs.Config) { c.NATSUser, c.NATSPassword = "router", wrong }),
				wantErr: nats.ErrAuthorization,
				secrets: []string{wrong, token},
			},
		},
	}
}

func nkeyMode(t *testing.T) authMode {
	user, seedFile, seed := newNkeyUser(t)
	_, strangerFile, strangerSeed := newNkeyUser(t)
	notASeed := filepath.Join(t.TempDir(), "not-a-seed.nk")
	if err := os.WriteFile(notASeed, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return authMode{
		server: &server.Options{Nkeys: []*server.NkeyUser{{Nkey: user}}},
		good:   withAuth(func(c *configs.Config) { c.NATSNKeySeed = seedFile }),
		bad: []badCredentials{
			{
				name:    "seed of an unknown user",
				cfg:     withAuth(func(c *configs.Config) { c.NATSNKeySeed = strangerFile }),
				wantErr: nats.ErrAuthorization,
				secrets: []string{strangerSeed, seed},
			},
			{
				name:    "file without a seed",
				cfg:     withAuth(func(c *configs.Config) { c.NATSNKeySeed = notASeed }),
				secrets: []string{seed},
			},
		},
	}
}

// newNkeyUser makes a user key pair and writes its seed to a file, as
// `nk -gen user` does; it returns the public key, the file and the seed.
func newNkeyUser(t *testing.T) (public, seedFile, seed string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	public, err = kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile = filepath.Join(t.TempDir(), "router.nk")
	if err := os.WriteFile(seedFile, append(s, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	return public, seedFile, string(s)
}

// credsMode runs the server in operator mode (decentralized JWT auth): it
// trusts an operator, learns the account's JWT from a memory resolver, and
// admits users whose JWT that account signed, as a real deployment with
// `nsc` and a resolver does.
func credsMode(t *testing.T) authMode {
	operator := mustKeyPair(t, nkeys.CreateOperator)
	oc := jwt.NewOperatorClaims(mustPublic(t, operator))
	oc.Name = "test-operator"
	operatorJWT := mustEncode(t, oc, operator)
	trusted, err := jwt.DecodeOperatorClaims(operatorJWT)
	if err != nil {
		t.Fatal(err)
	}

	account := mustKeyPair(t, nkeys.CreateAccount)
	ac := jwt.NewAccountClaims(mustPublic(t, account))
	ac.Name = "SOCIAL"
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(ac.Subject, mustEncode(t, ac, operator)); err != nil {
		t.Fatal(err)
	}

	// The same kind of account, unknown to the server.
	rogue := mustKeyPair(t, nkeys.CreateAccount)

	goodCreds, goodSeed := writeCreds(t, account, "router")
	rogueCreds, rogueSeed := writeCreds(t, rogue, "router")
	return authMode{
		server: &server.Options{TrustedOperators: []*jwt.OperatorClaims{trusted}, AccountResolver: resolver},
		good:   withAuth(func(c *configs.Config) { c.NATSCreds = goodCreds }),
		bad: []badCredentials{
			{
				name:    "user of an unknown account",
				cfg:     withAuth(func(c *configs.Config) { c.NATSCreds = rogueCreds }),
				wantErr: nats.ErrAuthorization,
				secrets: []string{rogueSeed, goodSeed},
			},
			{name: "no credentials", cfg: withAuth(nil), wantErr: nats.ErrAuthorization, secrets: []string{goodSeed}},
		},
	}
}

// writeCreds issues a user JWT signed by account and writes the creds file
// (JWT and the user's seed) that `nsc generate creds` would; it returns the
// file and the seed.
func writeCreds(t *testing.T, account nkeys.KeyPair, name string) (path, seed string) {
	t.Helper()
	user := mustKeyPair(t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(mustPublic(t, user))
	uc.Name = name
	s, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(mustEncode(t, uc, account), s)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), name+".creds")
	if err := os.WriteFile(path, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, string(s)
}

// tlsMode requires TLS and a client certificate signed by the test CA.
func tlsMode(t *testing.T) authMode {
	dir := t.TempDir()
	ca, caKey := newCA(t, "test CA")
	serverCert, serverKey := issue(t, ca, caKey, "nats server", x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := issue(t, ca, caKey, "router", x509.ExtKeyUsageClientAuth)
	otherCA, otherKey := newCA(t, "another CA")
	strangerCert, strangerKey := issue(t, otherCA, otherKey, "router", x509.ExtKeyUsageClientAuth)

	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	certFile := writePEM(t, dir, "client.pem", "CERTIFICATE", clientCert.Raw)
	keyFile := writePEM(t, dir, "client-key.pem", "PRIVATE KEY", marshalKey(t, clientKey))
	strangerCertFile := writePEM(t, dir, "stranger.pem", "CERTIFICATE", strangerCert.Raw)
	strangerKeyFile := writePEM(t, dir, "stranger-key.pem", "PRIVATE KEY", marshalKey(t, strangerKey))

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return authMode{
		server: &server.Options{
			TLS:       true,
			TLSVerify: true,
			// Generous under -race; the default (2s) is not the subject here.
			TLSTimeout: 10,
			TLSConfig: &tls.Config{
				Certificates: []tls.Certificate{{Certificate: [][]byte{serverCert.Raw}, PrivateKey: serverKey}},
				ClientCAs:    pool,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				MinVersion:   tls.VersionTLS12,
			},
		},
		good: withAuth(func(c *configs.Config) { c.NATSCA, c.NATSCert, c.NATSKey = caFile, certFile, keyFile }),
		bad: []badCredentials{
			{name: "no client certificate", cfg: withAuth(func(c *configs.Config) { c.NATSCA = caFile })},
			{
				name: "client certificate from another CA",
				cfg:  withAuth(func(c *configs.Config) { c.NATSCA, c.NATSCert, c.NATSKey = caFile, strangerCertFile, strangerKeyFile }),
			},
			{
				// The system roots do not know the test CA: the router must
				// refuse the server, not only the server the router.
				name: "server not verifiable without NATS_CA",
				cfg:  withAuth(func(c *configs.Config) { c.NATSCert, c.NATSKey = certFile, keyFile }),
			},
		},
	}
}

func newCA(t *testing.T, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	return sign(t, tmpl, tmpl, &key.PublicKey, key), key
}

// issue signs a certificate for name, valid for 127.0.0.1 and localhost.
func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, name string, usage x509.ExtKeyUsage) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	return sign(t, tmpl, ca, &key.PublicKey, caKey), key
}

func sign(t *testing.T, tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func serial(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func marshalKey(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func writePEM(t *testing.T, dir, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustKeyPair(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mustPublic(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func mustEncode(t *testing.T, claims jwt.Claims, signer nkeys.KeyPair) string {
	t.Helper()
	token, err := claims.Encode(signer)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// withAuth is the default configuration with set applied (nil: none).
func withAuth(set func(*configs.Config)) configs.Config {
	cfg := configs.Defaults()
	if set != nil {
		set(&cfg)
	}
	return cfg
}

// startAuthServer starts a server from opts on a random loopback port and
// returns its URL; it stops when the test ends.
func startAuthServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	opts.NoSigs, opts.NoLog = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	return srv.ClientURL()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
