package chat

import "testing"

func TestPacingSwitch(t *testing.T) {
	const lull, busy, middling = 1000, 100000, 30000
	quietSecond := make([]float64, int(releaseWindow/attackWindow))
	for i := range quietSecond {
		quietSecond[i] = lull
	}
	tests := []struct {
		name    string
		samples []float64 // objects per second, one per attack window
		want    bool
	}{
		{"light load: off", []float64{middling, coalesceAbove}, false},
		{"heavy load: on within one window", []float64{busy}, true},
		{"between the thresholds it stays on", []float64{busy, middling, middling, middling}, true},
		{"a short lull does not stop it", append([]float64{busy}, quietSecond[1:]...), true},
		{"a lull broken by load starts over", append(append([]float64{busy}, quietSecond[1:]...), middling, lull), true},
		{"a whole quiet second stops it", append([]float64{busy}, quietSecond...), false},
		{"and it starts again", append(append([]float64{busy}, quietSecond...), busy), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w pacingSwitch
			var on bool
			for _, r := range tt.samples {
				on = w.update(attackWindow, r)
			}
			if on != tt.want {
				t.Errorf("on = %v, want %v", on, tt.want)
			}
		})
	}
}
