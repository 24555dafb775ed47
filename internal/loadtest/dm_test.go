package loadtest

import "testing"

// TestDMChannels: people are placed in channels of about ChannelSize, and
// members() counts what placement made, which the expected deliveries rely on.
func TestDMChannels(t *testing.T) {
	tests := []struct {
		people, size, per int
		wantChannels      int
	}{
		{5000, 100, 2, 100},
		{5000, 100, 1, 50},
		{30, 8, 2, 8}, // runs of 8, 8, 8, 6; then dealt into 4
		{2, 100, 2, 2},
	}
	for _, tt := range tests {
		j := &edgeJob{Users: tt.people, ChannelSize: tt.size, ChannelsPerPerson: tt.per}
		cfg := DMConfig{People: tt.people, ChannelSize: tt.size, ChannelsPerPerson: tt.per}
		if got := cfg.channels(); got != tt.wantChannels {
			t.Errorf("%+v: %d channels, want %d", tt, got, tt.wantChannels)
		}
		count := map[string]int{}
		for p := range tt.people {
			chans := j.channelsOf(p)
			if len(chans) != tt.per || (tt.per == 2 && chans[0] == chans[1]) {
				t.Fatalf("%+v: person %d in %v", tt, p, chans)
			}
			for _, ch := range chans {
				count[ch]++
			}
		}
		if len(count) != tt.wantChannels {
			t.Errorf("%+v: people are in %d channels, want %d", tt, len(count), tt.wantChannels)
		}
		for p := range tt.people {
			for k, ch := range j.channelsOf(p) {
				if got := j.members(p, k); got != count[ch] {
					t.Errorf("%+v: members(%d, %d) = %d, but %s has %d", tt, p, k, got, ch, count[ch])
				}
			}
		}
	}
}
