package controllers

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// What the kubelet reports about pods that cannot start.
const (
	// reasonCreateContainerConfigError: a container's environment names a
	// Secret (or key) that does not exist; the message says which.
	reasonCreateContainerConfigError = "CreateContainerConfigError"
	// reasonContainerCreating: the pod's volumes are not mounted yet. For a
	// missing Secret volume the reason is only in a FailedMount Event.
	reasonContainerCreating = "ContainerCreating"
	eventReasonFailedMount  = "FailedMount"
)

// imagePullReasons are container waiting reasons that mean the image cannot be had.
var imagePullReasons = map[string]bool{"ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true}

// The kubelet's wording (k8s.io/kubernetes pkg/kubelet/kubelet_pods.go,
// pkg/kubelet/secret and pkg/volume/secret, v1.37): a missing Secret is a
// NotFound error `secret "NAME" not found` (`secrets` when it came from the
// API rather than the kubelet's cache), in a container's waiting message or
// in a FailedMount Event `MountVolume.SetUp failed for volume "VOLUME" :
// ...`; a missing key is `couldn't find key KEY in Secret NS/NAME` for an
// environment variable and `volume "VOLUME" : references non-existent secret
// key: KEY` for a volume.
var (
	secretNotFoundRE = regexp.MustCompile(`secrets? "([^"]+)" not found`)
	envKeyNotFoundRE = regexp.MustCompile(`couldn't find key (\S+) in Secret ([^/\s]+)/(\S+)`)
	volKeyNotFoundRE = regexp.MustCompile(`volume "([^"]+)" : references non-existent secret key: (\S+)`)
	trailingPunctRE  = regexp.MustCompile(`[.,;:]+$`)
)

// podSecretRef is a Secret key the room's pods read.
type podSecretRef struct {
	chatv1alpha1.SecretKeySelector
	// volume is the pod volume the key is mounted from; "" for an
	// environment variable.
	volume string
	// redisPassword: the key is the Redis password (an environment
	// variable of the chat and the managed Redis pods).
	redisPassword bool
	// managed: the managed Redis' password, which the operator creates.
	managed bool
}

// podSecretRefs are the Secret keys the room's chat and Redis pods read.
func podSecretRefs(room *chatv1alpha1.ChatRoom) []podSecretRef {
	var refs []podSecretRef
	if ref := redisPasswordRef(room); ref != nil {
		refs = append(refs, podSecretRef{SecretKeySelector: *ref, redisPassword: true, managed: room.Spec.Redis.ManagedRedis()})
	}
	if ref := bootstrapUsersRef(room); ref != nil {
		refs = append(refs, podSecretRef{SecretKeySelector: *ref, volume: bootstrapUsersVolume})
	}
	return refs
}

// secretFinding is a Secret a pod could not get, or the key it lacked.
type secretFinding struct {
	ref podSecretRef
	// notFound: the Secret does not exist; else it lacks ref.Key.
	notFound bool
}

func (f secretFinding) String() string {
	if f.notFound {
		return fmt.Sprintf("Secret %s not found", f.ref.Name)
	}
	return fmt.Sprintf("Secret %s has no key %q", f.ref.Name, f.ref.Key)
}

// findSecretProblem matches a kubelet message against the Secret keys the
// room's pods read. Only those count: a message about another Secret (an
// old ReplicaSet's, say) says nothing about this room's spec.
func findSecretProblem(msg, namespace string, refs []podSecretRef) (secretFinding, bool) {
	for _, m := range secretNotFoundRE.FindAllStringSubmatch(msg, -1) {
		for _, ref := range refs {
			if ref.Name == m[1] {
				return secretFinding{ref: ref, notFound: true}, true
			}
		}
	}
	if m := envKeyNotFoundRE.FindStringSubmatch(msg); m != nil && m[2] == namespace {
		name := trailingPunctRE.ReplaceAllString(m[3], "")
		for _, ref := range refs {
			if ref.volume == "" && ref.Name == name && ref.Key == m[1] {
				return secretFinding{ref: ref}, true
			}
		}
	}
	if m := volKeyNotFoundRE.FindStringSubmatch(msg); m != nil {
		key := trailingPunctRE.ReplaceAllString(m[2], "")
		for _, ref := range refs {
			if ref.volume != "" && ref.volume == m[1] && ref.Key == key {
				return secretFinding{ref: ref}, true
			}
		}
	}
	return secretFinding{}, false
}

// observePods reads what the kubelets report about the room's chat and
// Redis pods, from the cache: Secrets they cannot find, images they cannot
// pull, and a running chat pod to ask for presence. This is how the
// operator learns that a Secret is missing: it may not read Secrets.
func (r *Reconciler) observePods(ctx context.Context, s *scope) error {
	room := s.room
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(room.Namespace),
		client.MatchingLabels{LabelName: AppName, LabelInstance: room.Name}); err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	// By name, so that the status names the same pod every time.
	slices.SortFunc(pods.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	refs := podSecretRefs(room)
	mounting := map[types.UID]*corev1.Pod{}
	var running, ready []*corev1.Pod
	for i := range pods.Items {
		p := &pods.Items[i]
		if !p.DeletionTimestamp.IsZero() {
			continue
		}
		if p.Labels[LabelComponent] == ComponentChat && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
			running = append(running, p)
			if podReady(p) {
				ready = append(ready, p)
			}
		}
		for _, cs := range slices.Concat(p.Status.InitContainerStatuses, p.Status.ContainerStatuses) {
			w := cs.State.Waiting
			switch {
			case w == nil:
			case imagePullReasons[w.Reason]:
				if s.podProblem == "" {
					s.podProblem = fmt.Sprintf("pod %s cannot pull image %s: %s", p.Name, cs.Image, w.Message)
				}
			case w.Reason == reasonCreateContainerConfigError:
				if f, ok := findSecretProblem(w.Message, room.Namespace, refs); ok {
					s.noteSecretProblem(p, f)
				}
			case w.Reason == reasonContainerCreating && mountsSecret(p):
				mounting[p.UID] = p
			}
		}
	}
	// A ready pod answers for sure; an unready one that runs can still say
	// why (its Redis is unreachable).
	if chat := slices.Concat(ready, running); len(chat) > 0 {
		s.chatPodAddr = net.JoinHostPort(chat[0].Status.PodIP, strconv.Itoa(chatPort))
	}
	if len(mounting) > 0 {
		if err := r.observeMountFailures(ctx, s, mounting, refs); err != nil {
			return err
		}
	}
	slices.Sort(s.secretProblems) // a stable message, whichever pod said it first
	return nil
}

// observeMountFailures reads the FailedMount Events of pods that wait for
// their volumes: a Secret volume that cannot be mounted keeps the pod in
// ContainerCreating, and the kubelet says why only in an Event. Events are
// read live and only then, not watched.
func (r *Reconciler) observeMountFailures(ctx context.Context, s *scope, pods map[types.UID]*corev1.Pod, refs []podSecretRef) error {
	events := &corev1.EventList{}
	if err := r.APIReader.List(ctx, events, client.InNamespace(s.room.Namespace), client.MatchingFieldsSelector{
		Selector: fields.SelectorFromSet(fields.Set{"involvedObject.kind": "Pod", "reason": eventReasonFailedMount}),
	}); err != nil {
		return fmt.Errorf("list FailedMount events: %w", err)
	}
	for _, e := range events.Items {
		p, ok := pods[e.InvolvedObject.UID]
		if !ok {
			continue
		}
		if f, ok := findSecretProblem(e.Message, s.room.Namespace, refs); ok && f.ref.volume != "" {
			s.noteSecretProblem(p, f)
		}
	}
	return nil
}

// noteSecretProblem records a Secret pod p cannot find. The managed Redis
// password is the operator's to create again (reconcileRedis), for the
// password generation the pod runs with; any other is the room author's to
// create, and is reported.
func (s *scope) noteSecretProblem(p *corev1.Pod, f secretFinding) {
	if f.ref.managed && f.notFound {
		if s.passwordMissing == nil {
			s.passwordMissing = map[string]bool{}
		}
		s.passwordMissing[p.Annotations[PasswordGenerationAnnotation]] = true
		return
	}
	if problem := f.String(); !slices.Contains(s.secretProblems, problem) {
		s.secretProblems = append(s.secretProblems, problem)
	}
	if f.ref.redisPassword {
		s.redisSecretMissing = true
	}
}

// mountsSecret reports whether p has a Secret volume.
func mountsSecret(p *corev1.Pod) bool {
	return slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool { return v.Secret != nil })
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
