package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// byteRecorder is a TCP listener on 127.0.0.1 that records every
// connection and every byte it receives, and answers nothing.
type byteRecorder struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns int
	data  []byte
}

func listenRecorder(t *testing.T) *byteRecorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &byteRecorder{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by stop
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			r.wg.Add(1)
			go r.read(c)
		}
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *byteRecorder) read(c net.Conn) {
	defer r.wg.Done()
	defer c.Close()
	// A client that never hangs up must not hold stop forever.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		r.mu.Lock()
		r.data = append(r.data, buf[:n]...)
		r.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// stop closes the listener, waits until every connection has been read to
// its end, and returns what was received.
func (r *byteRecorder) stop() (conns int, data []byte) {
	if err := r.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		panic(err)
	}
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, bytes.Clone(r.data)
}

// TestOperatorNeverSendsASecret: a room that names someone else's Secret as
// its Redis password, with a Redis URL that is really the test's listener,
// gets nothing of that Secret out of the operator. The operator cannot read
// Secrets (its generated RBAC, which the envtest operator runs with), and
// never connects to a room's Redis: it asks the chat pods for presence,
// and the pods get the password from the kubelet.
func TestOperatorNeverSendsASecret(t *testing.T) {
	t.Parallel()
	tc := cluster(t)
	ctx := context.Background()
	ns := tc.newNamespace(t)
	canary := make([]byte, 16)
	_, _ = rand.Read(canary)
	value := []byte("hubbub-canary-" + hex.EncodeToString(canary))
	rec := listenRecorder(t)

	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payments-db"},
		Data:       map[string][]byte{"password": value},
	}
	room := &chatv1alpha1.ChatRoom{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exfil"},
		Spec: chatv1alpha1.ChatRoomSpec{
			Replicas: ptr.To[int32](1),
			Redis: &chatv1alpha1.RedisSpec{
				URL:               "redis://" + rec.ln.Addr().String(),
				PasswordSecretRef: &chatv1alpha1.SecretKeySelector{Name: secret.Name},
			},
		},
	}
	tc.createAll(t, ns, secret, room)
	// Every chance to misbehave: pods run, so presence is observed, twice.
	tc.markDeploymentReady(t, ns, "exfil")
	addr := tc.runChatPod(t, ns, "exfil")
	eventually(t, waitFor, func() error {
		r := tc.room(t, ns, "exfil")
		return firstErr(
			wantCondition(r, chatv1alpha1.ConditionRedisReady, metav1.ConditionTrue, chatv1alpha1.ReasonRedisReachable),
			eq("presence rounds at least 2", tc.presence.askedOf(addr) >= 2, true),
		)
	})

	conns, data := rec.stop()
	if bytes.Contains(data, value) {
		t.Errorf("the Secret's value reached the room's Redis URL: %q", data)
	}
	if conns != 0 {
		t.Errorf("the operator connected %d times to the room's Redis URL (received %q); it has no business there", conns, data)
	}

	// The pods get the password, from the kubelet.
	d := &appsv1.Deployment{}
	if err := tc.get(ns, "exfil", d); err != nil {
		t.Fatal(err)
	}
	if got := envSecret(d.Spec.Template.Spec.Containers[0], "HUBBUB_REDIS_PASSWORD"); got != "payments-db/password" {
		t.Errorf("chat pods' password env from %q, want payments-db/password", got)
	}
	// Had the operator tried to read the Secret, the API server would have
	// refused it.
	reader := tc.mgr.GetAPIReader()
	if err := reader.Get(ctx, client.ObjectKeyFromObject(secret), &corev1.Secret{}); !apierrors.IsForbidden(err) {
		t.Errorf("the operator's get of a Secret: %v, want Forbidden", err)
	}
	if err := reader.List(ctx, &corev1.SecretList{}, client.InNamespace(ns)); !apierrors.IsForbidden(err) {
		t.Errorf("the operator's list of Secrets: %v, want Forbidden", err)
	}
}
