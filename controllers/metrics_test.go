package controllers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestRoomMetricsAndEvents: a room's conditions and replicas show as metrics
// read from the API, and each condition change is an Event on the room.
func TestRoomMetricsAndEvents(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ns, room := tc.minimalRoom(t)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(RoomCollector{Reader: tc.c}); err != nil {
		t.Fatal(err)
	}
	// roomSeries is this room's series, "name{label=value,...} value".
	roomSeries := func() (map[string]float64, error) {
		families, err := reg.Gather()
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, f := range families {
			for _, m := range f.Metric {
				if label(m, "namespace") != ns || label(m, "room") != room.Name {
					continue
				}
				key := f.GetName()
				if typ := label(m, "type"); typ != "" {
					key += fmt.Sprintf("{type=%s,status=%s}", typ, label(m, "status"))
				}
				out[key] = m.GetGauge().GetValue()
			}
		}
		return out, nil
	}

	tc.markDeploymentReady(t, ns, room.ChatName())
	tc.markRedisReady(t, ns, room.RedisName())
	eventually(t, waitFor, func() error {
		got, err := roomSeries()
		if err != nil {
			return err
		}
		for _, c := range []struct {
			series string
			want   float64
		}{
			{"hubbub_chatroom_condition{type=Available,status=True}", 1},
			{"hubbub_chatroom_condition{type=Available,status=False}", 0},
			{"hubbub_chatroom_condition{type=Available,status=Unknown}", 0},
			{"hubbub_chatroom_condition{type=Degraded,status=False}", 1},
			{"hubbub_chatroom_desired_replicas", 2},
			{"hubbub_chatroom_replicas", 2},
			{"hubbub_chatroom_ready_replicas", 2},
		} {
			v, ok := got[c.series]
			if !ok || v != c.want {
				return fmt.Errorf("%s = %v (present %t), want %v; all: %v", c.series, v, ok, c.want, got)
			}
		}
		return nil
	})

	eventually(t, waitFor, func() error {
		var notes []string
		for _, e := range tc.events(t, tc.room(t, ns, room.Name)) {
			notes = append(notes, e.Type+" "+e.Reason+": "+e.Note)
		}
		for _, want := range []string{"Normal", "Available is True"} {
			if !strings.Contains(strings.Join(notes, "\n"), want) {
				return fmt.Errorf("no event with %q among:\n%s", want, strings.Join(notes, "\n"))
			}
		}
		return nil
	})
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
