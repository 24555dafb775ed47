package redisbackend

import "testing"

// keySlot agrees with CLUSTER KEYSLOT (values from redis-cli on 7.0).
func TestKeySlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":            12739, // the CRC16/XMODEM check value, 0x31C3
		"foo":                  12182,
		"hello":                866,
		"hb:{a/b}:ch:general":  13927,
		"hb:{a/b}:pub:general": 13927,
		"{a/b}":                13927,
		"a/b":                  13927,
		"foo{}{bar}":           8363, // an empty tag: the whole key
		"foo{{bar}}zap":        4015, // the tag is "{bar"
		"foo{bar}{zap}":        5061, // the first tag: "bar"
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
}
