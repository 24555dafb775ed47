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
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
	"github.com/hubbub-chat/hubbub/chatserver/config"
	"github.com/hubbub-chat/hubbub/chatserver/protocol"
)

// Reconciler reconciles ChatRooms. Build it with SetupWithManager, or fill
// the fields and call its SetupWithManager method.
type Reconciler struct {
	// Client reads from the manager's cache (see CacheOptions) and writes to
	// the API server.
	Client client.Client
	// APIReader reads the API server directly: objects the label-filtered
	// cache cannot see, and the Events of pods stuck mounting a volume.
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

	// Gathered by the steps, for the status and for later steps.
	// secretProblems are Secrets (or keys) the spec names that pods cannot
	// find; redisSecretMissing says the Redis password's is among them.
	secretProblems     []string
	redisSecretMissing bool
	// passwordMissing holds the managed password generations whose pods
	// cannot find the password Secret.
	passwordMissing map[string]bool
	// passwordGeneration is the managed password's current generation.
	passwordGeneration string
	podProblem         string
	// chatPodAddr is a running chat pod's host:port, to ask for presence.
	chatPodAddr string
	redisSet    *appsv1.StatefulSet
	deployment  *appsv1.Deployment
	service     *corev1.Service
	presence    presenceResult
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
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",resources=pods,verbs=list;watch
// +kubebuilder:rbac:groups="",resources=events,verbs=list
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=autoscaling,resources=horizontalpodautoscalers,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses;networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one ChatRoom's owned objects to their desired state and
// records what it saw in the room's status. An unchanged room is reconciled
// again after Options.PresenceInterval to refresh status.onlineUsers.
//
// The operator may create Secrets but not read them (see the markers
// above): it never holds, and so never sends anywhere, a Secret's value.
// Pods get Secrets from the kubelet; the operator learns that one is missing
// from what the kubelet reports about the pods (observePods).
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
		r.observePods,
		r.reconcileRedis,
		r.reconcileServiceAccount,
		r.reconcileDeployment, // with its ConfigMap
		r.reconcileService,
		r.reconcileDisruptionBudget,
		r.reconcileAutoscaler,
		r.reconcileIngress,
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

// reconcileRedis runs the managed Redis (Service, NetworkPolicy,
// StatefulSet, password Secret; with highAvailability a headless Service
// instead of the Service, and a PodDisruptionBudget) or, for an external
// Redis, removes what a previously managed one left. The password Secret
// goes with the StatefulSet, its owner (see desiredRedisSecret).
func (r *Reconciler) reconcileRedis(ctx context.Context, s *scope) error {
	room := s.room
	type named struct {
		obj  client.Object
		name string
	}
	// What a managed Redis of the other kind (or any, for an external
	// Redis) would have: absent, deleting it costs no write.
	var unwanted []named
	switch {
	case !room.Spec.Redis.ManagedRedis():
		unwanted = []named{
			{&appsv1.StatefulSet{}, room.RedisName()}, {&corev1.Service{}, room.RedisName()},
			{&corev1.Service{}, room.RedisHeadlessName()}, {&networkingv1.NetworkPolicy{}, room.RedisName()},
			{&policyv1.PodDisruptionBudget{}, room.RedisName()},
		}
	case room.Spec.Redis.HighAvailability():
		unwanted = []named{{&corev1.Service{}, room.RedisName()}}
	default:
		unwanted = []named{{&corev1.Service{}, room.RedisHeadlessName()}, {&policyv1.PodDisruptionBudget{}, room.RedisName()}}
	}
	for _, o := range unwanted {
		if err := deleteOwned(ctx, r, s, o.obj, o.name); err != nil {
			return err
		}
	}
	if !room.Spec.Redis.ManagedRedis() {
		return nil
	}
	service := desiredRedisService(room)
	if room.Spec.Redis.HighAvailability() {
		service = desiredRedisHeadlessService(room)
		if _, err := applyOwned(ctx, r, s, newPodDisruptionBudget, policyv1ac.ExtractPodDisruptionBudget, desiredRedisDisruptionBudget(room)); err != nil {
			return err
		}
	}
	if _, err := applyOwned(ctx, r, s, newService, corev1ac.ExtractService, service); err != nil {
		return err
	}
	if _, err := applyOwned(ctx, r, s, newNetworkPolicy, networkingv1ac.ExtractNetworkPolicy, desiredRedisNetworkPolicy(room)); err != nil {
		return err
	}
	generation, createSecret, err := r.passwordGeneration(ctx, s)
	if err != nil {
		return err
	}
	desired, err := desiredRedisStatefulSet(room, r.Options.RedisImage, generation)
	if err != nil {
		return err
	}
	if s.redisSet, err = applyOwned(ctx, r, s, newStatefulSet, appsv1ac.ExtractStatefulSet, desired); err != nil {
		return err
	}
	s.passwordGeneration = generation
	if !createSecret {
		return nil
	}
	// The pod templates name the new generation before the Secret exists,
	// so every pod that started with an older password is replaced, even if
	// the operator stops right after the Secret is created.
	return r.createRedisSecret(ctx, s)
}

// passwordGeneration is the managed password generation the Redis and chat
// pods should run with, and whether to create the password Secret: for a
// new StatefulSet, and when pods of the current generation report the
// Secret missing. The operator cannot read the Secret, so what it knows of
// it comes from its own StatefulSet and from the pods.
func (r *Reconciler) passwordGeneration(ctx context.Context, s *scope) (generation string, create bool, err error) {
	key := client.ObjectKey{Namespace: s.room.Namespace, Name: s.room.RedisName()}
	set := &appsv1.StatefulSet{}
	err = r.Client.Get(ctx, key, set)
	if apierrors.IsNotFound(err) {
		// The cache may not have caught up with our own creation.
		err = r.APIReader.Get(ctx, key, set)
	}
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", false, fmt.Errorf("get StatefulSet %s: %w", key.Name, err)
	default:
		generation = set.Spec.Template.Annotations[PasswordGenerationAnnotation]
		if generation != "" && !s.passwordMissing[generation] {
			return generation, false, nil
		}
	}
	generation, err = newPasswordGeneration()
	return generation, true, err
}

// createRedisSecret creates the managed Redis' password Secret with a fresh
// password. One that exists already is left alone, unread: it is the one
// the pods get.
func (r *Reconciler) createRedisSecret(ctx context.Context, s *scope) error {
	password, err := newRedisPassword()
	if err != nil {
		return err
	}
	secret := desiredRedisSecret(s.room, s.redisSet, password)
	switch err := r.Client.Create(ctx, secret, client.FieldOwner(FieldManager)); {
	case apierrors.IsAlreadyExists(err):
		return nil
	case err != nil:
		return fmt.Errorf("create Secret %s: %w", secret.Name, err)
	}
	s.eventf(corev1.EventTypeNormal, "Created", "Create", "Created Secret %s with a generated Redis password (generation %s)", secret.Name, s.passwordGeneration)
	return nil
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
	desired, err := desiredDeployment(s.room, chatImage(s.room, r.Options.ChatImage), configHash(data), s.cfg)
	if err != nil {
		return err
	}
	if s.passwordGeneration != "" {
		// The chat pods read the managed password too: a new one rolls them.
		desired.Spec.Template.WithAnnotations(map[string]string{PasswordGenerationAnnotation: s.passwordGeneration})
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

// observePresence asks a chat pod how many users are online in the room,
// once the Redis should be up and a chat pod runs. The pods read presence
// from Redis with the password the kubelet gave them; the operator needs
// none. Failing to ask is a status, not a reconcile error.
func (r *Reconciler) observePresence(ctx context.Context, s *scope) error {
	switch {
	case s.room.Spec.Redis.ManagedRedis() && (s.redisSet == nil || s.redisSet.Status.ReadyReplicas < 1):
		s.presence = presenceResult{state: presenceRedisStarting}
	case s.redisSecretMissing:
		s.presence = presenceResult{state: presenceSecretMissing}
	case s.chatPodAddr == "":
		// No chat pod runs, so no one is connected.
		s.presence = presenceResult{state: presenceNoChatPods}
	default:
		st, err := r.stats(ctx, s.chatPodAddr)
		switch {
		case err == nil:
			s.presence = presenceResult{state: presenceRead, count: st.OnlineUsers, redis: st.Redis}
		case errors.Is(err, ErrRedisUnavailable):
			s.presence = presenceResult{state: presenceFailed, err: err}
		default:
			s.presence = presenceResult{state: presenceUnasked, err: err}
		}
	}
	return nil
}

// stats asks the chat pod at addr for the room's online count and, when
// the presence counter can tell, the Redis replication it sees.
func (r *Reconciler) stats(ctx context.Context, addr string) (protocol.Stats, error) {
	if sr, ok := r.Options.Presence.(StatsReader); ok {
		return sr.Stats(ctx, addr)
	}
	n, err := r.Options.Presence.OnlineUsers(ctx, addr)
	return protocol.Stats{OnlineUsers: n}, err
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
		redisHA:        s.room.Spec.Redis.HighAvailability(),
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
