package controllers

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	jsonserializer "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// loadSample decodes every object of a config/samples file, strictly: a
// field the API does not know fails the test.
func loadSample(t *testing.T, name string) []client.Object {
	t.Helper()
	objs, err := decodeFile(filepath.Join("..", "config", "samples", name))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// decodeFile decodes every object of a YAML file, strictly.
func decodeFile(path string) ([]client.Object, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	scheme := testScheme()
	dec := jsonserializer.NewSerializerWithOptions(jsonserializer.DefaultMetaFactory, scheme, scheme, jsonserializer.SerializerOptions{Yaml: true, Strict: true})
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var objs []client.Object
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := dec.Decode(doc, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		objs = append(objs, obj.(client.Object))
	}
}

// roomOf returns the ChatRoom among objs.
func roomOf(t *testing.T, objs []client.Object) *chatv1alpha1.ChatRoom {
	t.Helper()
	for _, o := range objs {
		if r, ok := o.(*chatv1alpha1.ChatRoom); ok {
			return r
		}
	}
	t.Fatal("no ChatRoom in sample")
	return nil
}

// createAll creates objs in namespace ns.
func (tc *testCluster) createAll(t *testing.T, ns string, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		o.SetNamespace(ns)
		if err := tc.c.Create(context.Background(), o); err != nil {
			t.Fatalf("create %T %s: %v", o, o.GetName(), err)
		}
	}
}

func (tc *testCluster) room(t *testing.T, ns, name string) *chatv1alpha1.ChatRoom {
	t.Helper()
	r := &chatv1alpha1.ChatRoom{}
	if err := tc.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, r); err != nil {
		t.Fatal(err)
	}
	return r
}

// get reads obj's current state from the API server into obj.
func (tc *testCluster) get(ns, name string, obj client.Object) error {
	return tc.c.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, obj)
}

// markDeploymentReady plays the Deployment controller, which envtest does not
// run: every wanted pod is updated, ready and available; and one of those
// pods runs (runChatPod).
func (tc *testCluster) markDeploymentReady(t *testing.T, ns, name string) {
	t.Helper()
	defer tc.runChatPod(t, ns, name)
	eventually(t, 20*time.Second, func() error {
		d := &appsv1.Deployment{}
		if err := tc.get(ns, name, d); err != nil {
			return err
		}
		n := ptr.Deref(d.Spec.Replicas, 1)
		d.Status = appsv1.DeploymentStatus{
			ObservedGeneration: d.Generation,
			Replicas:           n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n,
			Conditions: []appsv1.DeploymentCondition{
				{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable"},
				{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"},
			},
		}
		return tc.c.Status().Update(context.Background(), d)
	})
}

// podIPs hands each pod the tests run an address of its own.
var podIPs atomic.Uint32

// runChatPod plays the ReplicaSet controller and the kubelet, which envtest
// does not run: a pod from the chat Deployment's template, running and ready
// at an address of its own. It returns the address (host:port) the
// operator asks for presence. A second call returns the same pod's.
func (tc *testCluster) runChatPod(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	d := &appsv1.Deployment{}
	eventually(t, waitFor, func() error { return tc.get(ns, name, d) })
	pod := &corev1.Pod{}
	switch err := tc.get(ns, name+"-running", pod); {
	case err == nil:
		return net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(chatPort))
	case !apierrors.IsNotFound(err):
		t.Fatal(err)
	}
	pod = &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-running", Labels: d.Spec.Template.Labels, Annotations: d.Spec.Template.Annotations},
		Spec:       d.Spec.Template.Spec,
	}
	if err := tc.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	n := podIPs.Add(1)
	ip := fmt.Sprintf("10.%d.%d.%d", 100+byte(n>>16), byte(n>>8), byte(n))
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		PodIP:      ip,
		PodIPs:     []corev1.PodIP{{IP: ip}},
		Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: ComponentChat, Image: pod.Spec.Containers[0].Image, Ready: true,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}},
		}},
	}
	if err := tc.c.Status().Update(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(ip, strconv.Itoa(chatPort))
}

// setPodWaiting plays the kubelet of a pod whose container cannot start:
// it waits with reason and message.
func (tc *testCluster) setPodWaiting(t *testing.T, pod *corev1.Pod, reason, message string) {
	t.Helper()
	eventually(t, waitFor, func() error {
		if err := tc.get(pod.Namespace, pod.Name, pod); err != nil {
			return err
		}
		pod.Status = corev1.PodStatus{
			Phase: corev1.PodPending,
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: pod.Spec.Containers[0].Name, Image: pod.Spec.Containers[0].Image,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}},
			}},
		}
		return tc.c.Status().Update(context.Background(), pod)
	})
}

// podFromTemplate creates a pod the way a ReplicaSet or StatefulSet
// controller would from tmpl (no status yet).
func (tc *testCluster) podFromTemplate(t *testing.T, ns, name string, tmpl corev1.PodTemplateSpec) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	// envtest runs no controller that creates "default" accounts.
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: cmp.Or(tmpl.Spec.ServiceAccountName, "default")}}
	if err := tc.c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
	if err := tc.c.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

// redisPodTemplate is the Redis StatefulSet's pod template with the volumes
// the StatefulSet controller adds for its claim templates.
func redisPodTemplate(s *appsv1.StatefulSet) corev1.PodTemplateSpec {
	tmpl := *s.Spec.Template.DeepCopy()
	for _, claim := range s.Spec.VolumeClaimTemplates {
		tmpl.Spec.Volumes = append(tmpl.Spec.Volumes, corev1.Volume{Name: claim.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim.Name + "-" + s.Name + "-0"},
		}})
	}
	return tmpl
}

// markRedisReady plays the StatefulSet controller for a managed Redis.
func (tc *testCluster) markRedisReady(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, 20*time.Second, func() error {
		s := &appsv1.StatefulSet{}
		if err := tc.get(ns, name, s); err != nil {
			return err
		}
		s.Status = appsv1.StatefulSetStatus{
			ObservedGeneration: s.Generation,
			Replicas:           1, ReadyReplicas: 1, CurrentReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1,
		}
		return tc.c.Status().Update(context.Background(), s)
	})
}

// condition returns the room's condition of type typ, or an error naming what it has.
func condition(room *chatv1alpha1.ChatRoom, typ string) (*metav1.Condition, error) {
	if c := findCondition(room.Status.Conditions, typ); c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("no %s condition in %+v", typ, room.Status.Conditions)
}

// wantCondition checks one condition's status and reason.
func wantCondition(room *chatv1alpha1.ChatRoom, typ string, status metav1.ConditionStatus, reason string) error {
	c, err := condition(room, typ)
	if err != nil {
		return err
	}
	if c.Status != status || c.Reason != reason {
		return fmt.Errorf("%s is %s/%s (%q), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
	}
	if c.ObservedGeneration != room.Generation {
		return fmt.Errorf("%s observedGeneration %d, want %d", typ, c.ObservedGeneration, room.Generation)
	}
	return nil
}

// ownedBy checks that room is obj's controlling owner.
func ownedBy(obj client.Object, room *chatv1alpha1.ChatRoom) error {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != room.UID || ref.Kind != "ChatRoom" || ref.APIVersion != chatv1alpha1.GroupVersion.String() || !ptr.Deref(ref.BlockOwnerDeletion, false) {
		return fmt.Errorf("%T %s: controller reference %+v, want ChatRoom %s (%s)", obj, obj.GetName(), ref, room.Name, room.UID)
	}
	return nil
}

// controlledBy checks that owner (a ChatRoom, or the room's Redis
// StatefulSet) is obj's controlling owner.
func controlledBy(obj, owner client.Object) error {
	if room, ok := owner.(*chatv1alpha1.ChatRoom); ok {
		return ownedBy(obj, room)
	}
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.UID != owner.GetUID() || ref.Kind != "StatefulSet" || ref.APIVersion != "apps/v1" || ref.Name != owner.GetName() {
		return fmt.Errorf("%T %s: controller reference %+v, want StatefulSet %s (%s)", obj, obj.GetName(), ref, owner.GetName(), owner.GetUID())
	}
	return nil
}

// events lists the Events recorded about the room.
func (tc *testCluster) events(t *testing.T, room *chatv1alpha1.ChatRoom) []eventsv1.Event {
	t.Helper()
	list := &eventsv1.EventList{}
	if err := tc.c.List(context.Background(), list, client.InNamespace(room.Namespace)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.UID == room.UID {
			out = append(out, e)
		}
	}
	return out
}

// writeCounter wraps a client and records every write made through it.
type writeCounter struct {
	client.Client
	mu     sync.Mutex
	writes []string
}

func (c *writeCounter) note(op string, obj any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name := fmt.Sprintf("%T", obj)
	if o, ok := obj.(client.Object); ok {
		name += " " + o.GetName()
	} else if ac, ok := obj.(interface{ GetName() *string }); ok {
		name += " " + ptr.Deref(ac.GetName(), "")
	}
	c.writes = append(c.writes, op+" "+name)
}

func (c *writeCounter) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.writes
	c.writes = nil
	return w
}

func (c *writeCounter) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.note("create", obj)
	return c.Client.Create(ctx, obj, opts...)
}

func (c *writeCounter) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	c.note("update", obj)
	return c.Client.Update(ctx, obj, opts...)
}

func (c *writeCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	c.note("patch", obj)
	return c.Client.Patch(ctx, obj, patch, opts...)
}

func (c *writeCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
	c.note("apply", obj)
	return c.Client.Apply(ctx, obj, opts...)
}

func (c *writeCounter) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	c.note("delete", obj)
	return c.Client.Delete(ctx, obj, opts...)
}

func (c *writeCounter) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	c.note("deleteAllOf", obj)
	return c.Client.DeleteAllOf(ctx, obj, opts...)
}

func (c *writeCounter) Status() client.SubResourceWriter { return c.SubResource("status") }

func (c *writeCounter) SubResource(sub string) client.SubResourceClient {
	return &subResourceCounter{SubResourceClient: c.Client.SubResource(sub), c: c, sub: sub}
}

type subResourceCounter struct {
	client.SubResourceClient
	c   *writeCounter
	sub string
}

func (s *subResourceCounter) Create(ctx context.Context, obj, subResource client.Object, opts ...client.SubResourceCreateOption) error {
	s.c.note(s.sub+" create", obj)
	return s.SubResourceClient.Create(ctx, obj, subResource, opts...)
}

func (s *subResourceCounter) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	s.c.note(s.sub+" update", obj)
	return s.SubResourceClient.Update(ctx, obj, opts...)
}

func (s *subResourceCounter) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	s.c.note(s.sub+" patch", obj)
	return s.SubResourceClient.Patch(ctx, obj, patch, opts...)
}

func (s *subResourceCounter) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.c.note(s.sub+" apply", obj)
	return s.SubResourceClient.Apply(ctx, obj, opts...)
}

// minimalRoom creates the minimal sample room in a new namespace.
func (tc *testCluster) minimalRoom(t *testing.T) (ns string, room *chatv1alpha1.ChatRoom) {
	t.Helper()
	ns = tc.newNamespace(t)
	room = roomOf(t, loadSample(t, "chat_v1alpha1_chatroom_minimal.yaml"))
	tc.createAll(t, ns, room)
	return ns, room
}
