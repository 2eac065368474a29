// Package httpx holds what the HTTP fallback (router/ingress) and the
// operator's endpoints (router/admin) both do: answer JSON (WriteJSON) and
// check a bearer token (Token). Each is written once, here, so the two
// servers cannot drift apart; it imports nothing of the router.
package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
)

// WriteJSON answers status with v as indented JSON, which no browser
// sniffs into anything else.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// Token is a secret a caller must offer (ADMIN_TOKEN, INGRESS_TOKEN); the
// zero Token is none set, which no offer matches.
type Token struct {
	set    bool
	digest [sha256.Size]byte
}

// NewToken keeps the digest of secret; "" is no token.
func NewToken(secret string) Token {
	if secret == "" {
		return Token{}
	}
	return Token{set: true, digest: sha256.Sum256([]byte(secret))}
}

// Set reports whether a token is required.
func (t Token) Set() bool { return t.set }

// Matches is the one check of an offered token (a bearer header's, or the
// console's login form's), surrounding space trimmed. Comparing digests
// keeps the comparison constant-time in the token's length too.
func (t Token) Matches(offered string) bool {
	got := sha256.Sum256([]byte(strings.TrimSpace(offered)))
	return t.set && subtle.ConstantTimeCompare(got[:], t.digest[:]) == 1
}

// Bearer reports whether r carries the token as "Authorization: Bearer
// <token>" (the scheme in any case).
func (t Token) Bearer(r *http.Request) bool {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	return strings.EqualFold(scheme, "Bearer") && t.Matches(token)
}
