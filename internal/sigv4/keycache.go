package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"sync"
)

// keyCacheSize bounds the derived-key cache. A key lives for one UTC day per
// secret, so this covers that many active access keys before anything is
// derived twice.
const keyCacheSize = 1024

type keyCacheKey struct{ secret, date string }

// keyCache holds signing keys derived from (secret, date) for the Verifier's
// fixed region and service. Deriving costs four HMACs; a hit costs a map
// lookup under a mutex.
type keyCache struct {
	mu sync.Mutex
	m  map[keyCacheKey][sha256.Size]byte
}

func (c *keyCache) get(secret, date, region, service string) [sha256.Size]byte {
	k := keyCacheKey{secret, date}
	c.mu.Lock()
	key, ok := c.m[k]
	c.mu.Unlock()
	if ok {
		return key
	}
	key = deriveKey(secret, date, region, service)
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[keyCacheKey][sha256.Size]byte)
	}
	if len(c.m) >= keyCacheSize {
		// Evict an arbitrary entry; map iteration order is randomised, and
		// the evicted key is only re-derived, never wrong.
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	// Clone so the cache does not pin the request's Authorization header.
	c.m[keyCacheKey{strings.Clone(secret), strings.Clone(date)}] = key
	c.mu.Unlock()
	return key
}

// deriveKey is SigV4's HMAC chain: "AWS4"+secret → date → region → service → "aws4_request".
func deriveKey(secret, date, region, service string) [sha256.Size]byte {
	mac := func(key []byte, data string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(data))
		return h.Sum(nil)
	}
	k := mac([]byte("AWS4"+secret), date)
	k = mac(k, region)
	k = mac(k, service)
	k = mac(k, terminator)
	var out [sha256.Size]byte
	copy(out[:], k)
	return out
}

// hmacSHA256 is HMAC-SHA256 for a 32-byte key, built on sha256.Sum256 over a
// caller-owned scratch buffer so the hot path does not allocate.
func hmacSHA256(key *[sha256.Size]byte, msg []byte, scratch []byte) [sha256.Size]byte {
	const block = 64
	buf := append(scratch[:0], make([]byte, block)...)
	for i := range block {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ 0x36
	}
	buf = append(buf, msg...)
	inner := sha256.Sum256(buf)
	buf = buf[:block]
	for i := range block {
		var k byte
		if i < len(key) {
			k = key[i]
		}
		buf[i] = k ^ 0x5c
	}
	buf = append(buf, inner[:]...)
	return sha256.Sum256(buf)
}
