package controllers

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	autoscalingv2ac "k8s.io/client-go/applyconfigurations/autoscaling/v2"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
)

// Reconciler reconciles ChatRooms. Build it with SetupWithManager, or fill
// the fields and call its SetupWithManager method.
type Reconciler struct {
	// Client reads from the manager's cache (see CacheOptions) and writes to
	// the API server.
	Client client.Client
	// APIReader reads the API server directly: Secret data (never cached)
	// and objects the label-filtered cache cannot see.
	APIReader client.Reader
	// Recorder records Events on ChatRooms; nil records none.
	Recorder events.EventRecorder
	// Clock stamps condition transitions; nil means the real clock.
	Clock clock.PassiveClock
	// Options are the operator's settings; SetupWithManager defaults them.
	Options Options
}

// scope is one reconcile's working state, shared by its steps.
type scope struct {
	r *Reconciler
	// orig is the ChatRoom as read; room is its defaulted copy that every
	// step works from.
	orig, room *chatv1alpha1.ChatRoom
	cfg        config.Config

	// Gathered by the steps, for the status.
	// secretProblems describe missing Secrets or keys; missingSecrets are
	// the names of the missing Secrets.
	secretProblems []string
	missingSecrets map[string]bool
	secretVersions []string
	redisSet       *appsv1.StatefulSet
	deployment     *appsv1.Deployment
	service        *corev1.Service
	podProblem     string
	presence       presenceResult
}

func (s *scope) eventf(eventType, reason, action, note string, args ...any) {
	if s.r.Recorder != nil {
		s.r.Recorder.Eventf(s.orig, nil, eventType, reason, action, note, args...)
	}
}

// +kubebuilder:rbac:groups=chat.hubbub.dev,resources=chatrooms,verbs=get;list;watch
// +kubebuilder:rbac:groups=chat.hubbub.dev,resources=chatrooms/status,verbs=patch
// +kubebuilder:rbac:groups=chat.hubbub.dev,resources=chatrooms/finalizers,verbs=update
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=apps,resources=statefulsets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one ChatRoom's owned objects to their desired state and
// records what it saw in the room's status. An unchanged room is reconciled
// again after Options.PresenceInterval to refresh status.onlineUsers.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	orig := &chatv1alpha1.ChatRoom{}
	if err := r.Client.Get(ctx, req.NamespacedName, orig); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !orig.DeletionTimestamp.IsZero() {
		// Everything the room owns has an owner reference: the garbage
		// collector removes it.
		return ctrl.Result{}, nil
	}
	room := orig.DeepCopy()
	chatv1alpha1.SetDefaults(room)
	s := &scope{r: r, orig: orig, room: room, cfg: chatConfig(room)}
	defer func() {
		reterr = errors.Join(reterr, r.writeStatus(ctx, s, reterr))
	}()

	for _, step := range []func(context.Context, *scope) error{
		r.observeSecrets,
		r.reconcileRedis,
		r.reconcileServiceAccount,
		r.reconcileDeployment, // with its ConfigMap
		r.reconcileService,
		r.reconcileDisruptionBudget,
		r.reconcileAutoscaler,
		r.reconcileIngress,
		r.observePods,
		r.observePresence,
	} {
		if err := step(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Jitter spreads the refreshes of rooms created together (say, by one
	// `kubectl apply`) instead of reconciling them all in the same second.
	return ctrl.Result{RequeueAfter: wait.Jitter(r.Options.PresenceInterval, 0.1)}, nil
}

// observeSecrets checks that the Secrets the spec names exist, and notes
// their versions so that a changed Secret rolls the pods. Secrets are cached
// as metadata only: the operator never holds every Secret's data in memory.
func (r *Reconciler) observeSecrets(ctx context.Context, s *scope) error {
	refs := []*chatv1alpha1.SecretKeySelector{bootstrapUsersRef(s.room)}
	if !s.room.Spec.Redis.ManagedRedis() {
		refs = append(refs, redisPasswordRef(s.room))
	}
	for _, ref := range refs {
		if ref == nil {
			continue
		}
		m, err := r.secretMetadata(ctx, s.room.Namespace, ref.Name)
		switch {
		case apierrors.IsNotFound(err):
			s.secretMissing(ref.Name, fmt.Sprintf("Secret %s not found", ref.Name))
		case err != nil:
			return fmt.Errorf("get Secret %s: %w", ref.Name, err)
		default:
			s.secretVersions = append(s.secretVersions, secretVersion(m))
		}
	}
	return nil
}

func (s *scope) secretMissing(name, problem string) {
	if s.missingSecrets == nil {
		s.missingSecrets = map[string]bool{}
	}
	s.missingSecrets[name] = true
	s.secretProblems = append(s.secretProblems, problem)
}

func (r *Reconciler) secretMetadata(ctx context.Context, namespace, name string) (*metav1.PartialObjectMetadata, error) {
	m := secretMetadataObject()
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, m)
	return m, err
}

func secretVersion(m metav1.Object) string {
	return fmt.Sprintf("%s %s/%s", m.GetName(), m.GetUID(), m.GetResourceVersion())
}

// reconcileRedis runs the managed Redis (password Secret, Service,
// NetworkPolicy, StatefulSet) or, for an external Redis, removes what a
// previously managed one left.
func (r *Reconciler) reconcileRedis(ctx context.Context, s *scope) error {
	room := s.room
	if !room.Spec.Redis.ManagedRedis() {
		for _, o := range []client.Object{&appsv1.StatefulSet{}, &corev1.Service{}, &networkingv1.NetworkPolicy{}, secretMetadataObject()} {
			if err := deleteOwned(ctx, r, s, o, room.RedisName()); err != nil {
				return err
			}
		}
		return nil
	}
	secret, err := r.ensureRedisSecret(ctx, s)
	if err != nil {
		return err
	}
	version := secretVersion(secret)
	s.secretVersions = append(s.secretVersions, version)

	if _, err := applyOwned(ctx, r, s, newService, corev1ac.ExtractService, desiredRedisService(room)); err != nil {
		return err
	}
	if _, err := applyOwned(ctx, r, s, newNetworkPolicy, networkingv1ac.ExtractNetworkPolicy, desiredRedisNetworkPolicy(room, r.Options)); err != nil {
		return err
	}
	desired, err := desiredRedisStatefulSet(room, r.Options.RedisImage, configHash(nil, []string{version}))
	if err != nil {
		return err
	}
	s.redisSet, err = applyOwned(ctx, r, s, newStatefulSet, appsv1ac.ExtractStatefulSet, desired)
	return err
}

// ensureRedisSecret returns the managed Redis' password Secret, creating it
// with a fresh password when it does not exist. An existing Secret is never
// rewritten: its password is the one Redis runs with.
func (r *Reconciler) ensureRedisSecret(ctx context.Context, s *scope) (metav1.Object, error) {
	room := s.room
	m, err := r.secretMetadata(ctx, room.Namespace, room.RedisName())
	if err == nil {
		if !metav1.IsControlledBy(m, room) {
			return nil, &ownershipError{"Secret", room.RedisName()}
		}
		return m, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get Secret %s: %w", room.RedisName(), err)
	}
	// Not in the cache. It may be that the cache has not caught up with our
	// own creation: a live read keeps us from replacing a password in use.
	live := &corev1.Secret{}
	switch err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: room.Namespace, Name: room.RedisName()}, live); {
	case err == nil:
		if !metav1.IsControlledBy(live, room) {
			return nil, &ownershipError{"Secret", room.RedisName()}
		}
		return live, nil
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("get Secret %s: %w", room.RedisName(), err)
	}
	password, err := newRedisPassword()
	if err != nil {
		return nil, err
	}
	desired := desiredRedisSecret(room, password)
	if err := r.Client.Apply(ctx, desired, client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		return nil, fmt.Errorf("apply Secret %s: %w", room.RedisName(), err)
	}
	s.eventf(corev1.EventTypeNormal, "Created", "Apply", "Created Secret %s with a generated Redis password", room.RedisName())
	// Apply decoded the server's answer into desired.
	return &metav1.ObjectMeta{Name: room.RedisName(), UID: ptr.Deref(desired.UID, ""), ResourceVersion: ptr.Deref(desired.ResourceVersion, "")}, nil
}

func (r *Reconciler) reconcileServiceAccount(ctx context.Context, s *scope) error {
	_, err := applyOwned(ctx, r, s, newServiceAccount, corev1ac.ExtractServiceAccount, desiredServiceAccount(s.room))
	return err
}

// reconcileDeployment writes the rendered configuration, then the chat
// Deployment whose pod template carries the configuration's hash.
func (r *Reconciler) reconcileDeployment(ctx context.Context, s *scope) error {
	data := configEnv(s.cfg)
	if _, err := applyOwned(ctx, r, s, newConfigMap, corev1ac.ExtractConfigMap, desiredConfigMap(s.room, data)); err != nil {
		return err
	}
	desired, err := desiredDeployment(s.room, chatImage(s.room, r.Options.ChatImage), configHash(data, s.secretVersions), s.cfg)
	if err != nil {
		return err
	}
	if s.room.Spec.Autoscaling != nil {
		if err := r.handOverReplicas(ctx, s); err != nil {
			return err
		}
	}
	s.deployment, err = applyOwned(ctx, r, s, newDeployment, appsv1ac.ExtractDeployment, desired)
	return err
}

// replicasHandoverManager co-owns the Deployment's replica count while the
// operator hands it to a HorizontalPodAutoscaler.
const replicasHandoverManager = FieldManager + "-replicas-handover"

// handOverReplicas keeps the replica count when autoscaling is turned on.
// An apply that stops setting a field its manager alone owns removes the
// field, which would drop the Deployment to the default of one pod until the
// autoscaler acts. So, while the operator still owns the count, a second
// manager first claims the same value; the autoscaler's scale updates take
// it over from there. (The Kubernetes server-side apply documentation
// describes this handover.)
func (r *Reconciler) handOverReplicas(ctx context.Context, s *scope) error {
	live := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: s.room.Namespace, Name: s.room.ChatName()}, live); err != nil {
		return client.IgnoreNotFound(err)
	}
	ours, err := appsv1ac.ExtractDeployment(live, FieldManager)
	if err != nil {
		return fmt.Errorf("read managed fields of Deployment %s: %w", live.Name, err)
	}
	if ours.Spec == nil || ours.Spec.Replicas == nil || live.Spec.Replicas == nil {
		return nil
	}
	claim := appsv1ac.Deployment(live.Name, live.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(*live.Spec.Replicas))
	if err := r.Client.Apply(ctx, claim, client.FieldOwner(replicasHandoverManager)); err != nil {
		return fmt.Errorf("hand Deployment %s replicas to the autoscaler: %w", live.Name, err)
	}
	return nil
}

func (r *Reconciler) reconcileService(ctx context.Context, s *scope) error {
	var err error
	s.service, err = applyOwned(ctx, r, s, newService, corev1ac.ExtractService, desiredService(s.room))
	return err
}

func (r *Reconciler) reconcileDisruptionBudget(ctx context.Context, s *scope) error {
	desired := desiredPodDisruptionBudget(s.room)
	if desired == nil {
		return deleteOwned(ctx, r, s, &policyv1.PodDisruptionBudget{}, s.room.ChatName())
	}
	_, err := applyOwned(ctx, r, s, newPodDisruptionBudget, policyv1ac.ExtractPodDisruptionBudget, desired)
	return err
}

func (r *Reconciler) reconcileAutoscaler(ctx context.Context, s *scope) error {
	desired := desiredHorizontalPodAutoscaler(s.room)
	if desired == nil {
		return deleteOwned(ctx, r, s, &autoscalingv2.HorizontalPodAutoscaler{}, s.room.ChatName())
	}
	_, err := applyOwned(ctx, r, s, newHorizontalPodAutoscaler, autoscalingv2ac.ExtractHorizontalPodAutoscaler, desired)
	return err
}

func (r *Reconciler) reconcileIngress(ctx context.Context, s *scope) error {
	desired := desiredIngress(s.room)
	if desired == nil {
		return deleteOwned(ctx, r, s, &networkingv1.Ingress{}, s.room.ChatName())
	}
	_, err := applyOwned(ctx, r, s, newIngress, networkingv1ac.ExtractIngress, desired)
	return err
}

// imagePullReasons are container waiting reasons that mean the image cannot be had.
var imagePullReasons = map[string]bool{"ImagePullBackOff": true, "ErrImagePull": true, "InvalidImageName": true}

// observePods looks for chat pods that cannot pull their image; it lists
// (cached) pods only while the Deployment is short of ready pods.
func (r *Reconciler) observePods(ctx context.Context, s *scope) error {
	d := s.deployment
	if d == nil || d.Status.ReadyReplicas >= desiredPods(d) {
		return nil
	}
	pods := &corev1.PodList{}
	if err := r.Client.List(ctx, pods, client.InNamespace(s.room.Namespace), client.MatchingLabels(selectorLabels(s.room, ComponentChat))); err != nil {
		return fmt.Errorf("list chat pods: %w", err)
	}
	for _, p := range pods.Items {
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil && imagePullReasons[w.Reason] {
				s.podProblem = fmt.Sprintf("pod %s cannot pull image %s: %s", p.Name, cs.Image, w.Message)
				return nil
			}
		}
	}
	return nil
}

// observePresence counts the users online in the room's Redis, once the
// Redis should be up. Failing to read is a status, not a reconcile error.
func (r *Reconciler) observePresence(ctx context.Context, s *scope) error {
	room := s.room
	if room.Spec.Redis.ManagedRedis() && (s.redisSet == nil || s.redisSet.Status.ReadyReplicas < 1) {
		s.presence = presenceResult{state: presenceRedisStarting}
		return nil
	}
	conn := RedisConn{URL: s.cfg.RedisURL}
	if ref := redisPasswordRef(room); ref != nil {
		if s.missingSecrets[ref.Name] {
			s.presence = presenceResult{state: presenceSecretMissing}
			return nil
		}
		// Secret data is read live, never cached (see observeSecrets).
		secret := &corev1.Secret{}
		err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: room.Namespace, Name: ref.Name}, secret)
		switch {
		case apierrors.IsNotFound(err):
			s.presence = presenceResult{state: presenceSecretMissing}
			s.secretMissing(ref.Name, fmt.Sprintf("Secret %s not found", ref.Name))
			return nil
		case err != nil:
			return fmt.Errorf("get Secret %s: %w", ref.Name, err)
		}
		password, ok := secret.Data[ref.Key]
		if !ok {
			s.presence = presenceResult{state: presenceSecretMissing}
			s.secretMissing(ref.Name, fmt.Sprintf("Secret %s has no key %q", ref.Name, ref.Key))
			return nil
		}
		conn.Password = string(password)
	}
	n, err := r.Options.Presence.OnlineUsers(ctx, conn, room.RoomID())
	if err != nil {
		s.presence = presenceResult{state: presenceFailed, err: err}
		return nil
	}
	s.presence = presenceResult{state: presenceRead, count: n}
	return nil
}

// writeStatus computes the room's status and writes it, by server-side
// apply of the status alone, only when it changed. It also records an Event
// when the room becomes degraded or recovers.
func (r *Reconciler) writeStatus(ctx context.Context, s *scope, reconcileErr error) error {
	if ctx.Err() != nil {
		return nil // shutting down: nothing was observed to the end
	}
	var clk clock.PassiveClock = clock.RealClock{}
	if r.Clock != nil {
		clk = r.Clock
	}
	in := statusInputs{
		generation:     s.orig.Generation,
		reconcileErr:   reconcileErr,
		deployment:     s.deployment,
		selector:       labels.SelectorFromSet(selectorLabels(s.room, ComponentChat)).String(),
		url:            roomURL(s.room, s.service),
		presence:       s.presence,
		secretProblems: s.secretProblems,
		podProblem:     s.podProblem,
		scaledToZero:   s.room.Spec.Autoscaling == nil && *s.room.Spec.Replicas == 0,
	}
	next := computeStatus(in, s.orig.Status, metav1.NewTime(clk.Now()).Rfc3339Copy())
	if equality.Semantic.DeepEqual(next, s.orig.Status) {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(chatv1alpha1.GroupVersion.WithKind("ChatRoom"))
	u.SetNamespace(s.orig.Namespace)
	u.SetName(s.orig.Name)
	st, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&next)
	if err != nil {
		return fmt.Errorf("encode status: %w", err)
	}
	u.Object["status"] = st
	if err := r.Client.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership); err != nil {
		if apierrors.IsNotFound(err) {
			return nil // deleted meanwhile
		}
		return fmt.Errorf("write status: %w", err)
	}
	r.recordConditionEvents(s, s.orig.Status, next)
	return nil
}

// recordConditionEvents turns every condition change into an Event, so that
// `kubectl describe chatroom` tells the room's story. Degraded keeps its own
// wording: a Warning named for the problem, and Recovered when it clears.
func (r *Reconciler) recordConditionEvents(s *scope, prev, next chatv1alpha1.ChatRoomStatus) {
	for _, now := range next.Conditions {
		was := findCondition(prev.Conditions, now.Type)
		if was != nil && was.Status == now.Status && was.Reason == now.Reason {
			continue
		}
		switch {
		case now.Type == chatv1alpha1.ConditionDegraded && now.Status == metav1.ConditionTrue:
			s.eventf(corev1.EventTypeWarning, now.Reason, "Reconcile", "%s", now.Message)
		case now.Type == chatv1alpha1.ConditionDegraded:
			if was != nil && was.Status == metav1.ConditionTrue {
				s.eventf(corev1.EventTypeNormal, "Recovered", "Reconcile", "no longer degraded (was %s)", was.Reason)
			}
		default:
			eventType := corev1.EventTypeNormal
			if now.Status == metav1.ConditionFalse && now.Type != chatv1alpha1.ConditionProgressing {
				eventType = corev1.EventTypeWarning // not Available, Redis not ready
			}
			s.eventf(eventType, now.Reason, "Reconcile", "%s is %s: %s", now.Type, now.Status, now.Message)
		}
	}
}

func secretMetadataObject() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
	return m
}

// Constructors for applyOwned.
func newDeployment() *appsv1.Deployment                     { return &appsv1.Deployment{} }
func newStatefulSet() *appsv1.StatefulSet                   { return &appsv1.StatefulSet{} }
func newService() *corev1.Service                           { return &corev1.Service{} }
func newConfigMap() *corev1.ConfigMap                       { return &corev1.ConfigMap{} }
func newServiceAccount() *corev1.ServiceAccount             { return &corev1.ServiceAccount{} }
func newPodDisruptionBudget() *policyv1.PodDisruptionBudget { return &policyv1.PodDisruptionBudget{} }
func newIngress() *networkingv1.Ingress                     { return &networkingv1.Ingress{} }
func newNetworkPolicy() *networkingv1.NetworkPolicy         { return &networkingv1.NetworkPolicy{} }
func newHorizontalPodAutoscaler() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{}
}
