package controllers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// Room metrics, in kube-state-metrics' shape: a condition is three series,
// one per status, the current one 1 and the others 0, so an alert can say
// `hubbub_chatroom_condition{type="Degraded",status="True"} == 1` and a
// missing room is told apart from a healthy one.
var (
	roomConditionDesc = prometheus.NewDesc("hubbub_chatroom_condition",
		"A ChatRoom's status condition: 1 for its current status, 0 for the others.",
		[]string{"namespace", "room", "type", "status"}, nil)
	roomReplicasDesc = prometheus.NewDesc("hubbub_chatroom_replicas",
		"Chat pods a ChatRoom's Deployment runs (status.replicas).", []string{"namespace", "room"}, nil)
	roomReadyDesc = prometheus.NewDesc("hubbub_chatroom_ready_replicas",
		"Ready chat pods of a ChatRoom (status.readyReplicas).", []string{"namespace", "room"}, nil)
	roomDesiredDesc = prometheus.NewDesc("hubbub_chatroom_desired_replicas",
		"Chat pods a ChatRoom asks for (spec.replicas, or the autoscaler's minimum).", []string{"namespace", "room"}, nil)
	roomOnlineDesc = prometheus.NewDesc("hubbub_chatroom_online_users",
		"People online in a ChatRoom (status.onlineUsers).", []string{"namespace", "room"}, nil)
)

var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// RoomCollector exports every ChatRoom's status as metrics at scrape time,
// read from the manager's cache: no API call per scrape, and nothing to keep
// in step when rooms come and go.
type RoomCollector struct {
	Reader client.Reader
	// Timeout bounds one scrape's read of the cache. Default 5s.
	Timeout time.Duration
	// OnError is told when the rooms cannot be listed (the scrape then
	// exports no room metrics); nil ignores it.
	OnError func(error)
}

var _ prometheus.Collector = RoomCollector{}

// Describe implements prometheus.Collector.
func (c RoomCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{roomConditionDesc, roomReplicasDesc, roomReadyDesc, roomDesiredDesc, roomOnlineDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c RoomCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), cmpOr(c.Timeout, 5*time.Second))
	defer cancel()
	var rooms chatv1alpha1.ChatRoomList
	if err := c.Reader.List(ctx, &rooms); err != nil {
		if c.OnError != nil {
			c.OnError(err)
		}
		return
	}
	for i := range rooms.Items {
		collectRoom(ch, &rooms.Items[i])
	}
}

func collectRoom(ch chan<- prometheus.Metric, r *chatv1alpha1.ChatRoom) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{r.Namespace, r.Name}, labels...)...)
	}
	for _, t := range []string{chatv1alpha1.ConditionAvailable, chatv1alpha1.ConditionProgressing, chatv1alpha1.ConditionRedisReady, chatv1alpha1.ConditionDegraded} {
		// A condition not set yet is Unknown, as the API conventions say.
		current := metav1.ConditionUnknown
		if cond := findCondition(r.Status.Conditions, t); cond != nil {
			current = cond.Status
		}
		for _, s := range conditionStatuses {
			v := 0.0
			if s == current {
				v = 1
			}
			gauge(roomConditionDesc, v, t, string(s))
		}
	}
	gauge(roomReplicasDesc, float64(r.Status.Replicas))
	gauge(roomReadyDesc, float64(r.Status.ReadyReplicas))
	gauge(roomOnlineDesc, float64(r.Status.OnlineUsers))
	desired := 0.0
	switch {
	case r.Spec.Autoscaling != nil:
		desired = float64(max(r.Spec.Autoscaling.MinReplicas, 1))
	case r.Spec.Replicas != nil:
		desired = float64(*r.Spec.Replicas)
	}
	gauge(roomDesiredDesc, desired)
}
