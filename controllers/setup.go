package controllers

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// ControllerName names the controller (in logs and metrics) and the Events' reporter.
const ControllerName = "hubbub-operator"

// secretRefIndex indexes ChatRooms by the names of the Secrets their spec
// names, so a Secret that appears or changes wakes exactly those rooms.
const secretRefIndex = "spec.secretRefs"

// SetupWithManager builds the ChatRoom reconciler from mgr and opts and
// registers it. The manager should use CacheOptions (it works without, at
// the cost of caching every Deployment, Service, ... of the cluster).
func SetupWithManager(mgr ctrl.Manager, opts Options) error {
	r := &Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(ControllerName),
		Options:   opts,
	}
	return r.SetupWithManager(mgr)
}

// SetupWithManager defaults r.Options and registers r with mgr: it watches
// ChatRooms, the objects they own, and the Secrets they name.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	opts, err := r.Options.withDefaults()
	if err != nil {
		return err
	}
	r.Options = opts
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &chatv1alpha1.ChatRoom{}, secretRefIndex, secretRefs); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("chatroom").
		// Status writes (ours included) do not change the generation, so
		// they do not wake the room again.
		For(&chatv1alpha1.ChatRoom{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&autoscalingv2.HorizontalPodAutoscaler{}).
		Owns(&networkingv1.Ingress{}).
		Owns(&appsv1.StatefulSet{}).
		Owns(&networkingv1.NetworkPolicy{}).
		// Secrets, owned or named by a room, are watched as metadata only.
		Watches(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.roomsForSecret), builder.OnlyMetadata).
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}

// secretRefs are the Secret names a ChatRoom's spec refers to.
func secretRefs(o client.Object) []string {
	room, ok := o.(*chatv1alpha1.ChatRoom)
	if !ok {
		return nil
	}
	var names []string
	if ref := room.Spec.BootstrapUsersSecretRef; ref != nil {
		names = append(names, ref.Name)
	}
	if room.Spec.Redis != nil && room.Spec.Redis.PasswordSecretRef != nil {
		ref := room.Spec.Redis.PasswordSecretRef
		names = append(names, ref.Name)
	}
	return names
}

// roomsForSecret maps a Secret event to the room that owns the Secret and
// the rooms that name it.
func (r *Reconciler) roomsForSecret(ctx context.Context, o client.Object) []reconcile.Request {
	var reqs []reconcile.Request
	if ref := metav1.GetControllerOf(o); ref != nil && ref.Kind == "ChatRoom" && ref.APIVersion == chatv1alpha1.GroupVersion.String() {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: ref.Name}})
	}
	rooms := &chatv1alpha1.ChatRoomList{}
	if err := r.Client.List(ctx, rooms, client.InNamespace(o.GetNamespace()), client.MatchingFields{secretRefIndex: o.GetName()}); err != nil {
		// A map function cannot return an error; the periodic resync
		// (Options.PresenceInterval) still reaches these rooms.
		ctrl.LoggerFrom(ctx).Error(err, "list ChatRooms naming Secret", "secret", o.GetName())
		return reqs
	}
	for _, room := range rooms.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: room.Namespace, Name: room.Name}})
	}
	return reqs
}

// CacheOptions configure the manager's cache for the operator: owned kinds
// are cached only when labelled as managed by it (not every Deployment or
// ConfigMap of the cluster), Secrets only as metadata without managed
// fields, and only the given namespaces (none: all).
func CacheOptions(namespaces []string) cache.Options {
	owned := cache.ByObject{Label: labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})}
	opts := cache.Options{ByObject: map[client.Object]cache.ByObject{
		&appsv1.Deployment{}:                     owned,
		&appsv1.StatefulSet{}:                    owned,
		&corev1.Service{}:                        owned,
		&corev1.ConfigMap{}:                      owned,
		&corev1.ServiceAccount{}:                 owned,
		&policyv1.PodDisruptionBudget{}:          owned,
		&autoscalingv2.HorizontalPodAutoscaler{}: owned,
		&networkingv1.Ingress{}:                  owned,
		&networkingv1.NetworkPolicy{}:            owned,
		// Pods are only listed (image pull problems), never applied.
		&corev1.Pod{}: {Label: owned.Label, Transform: cache.TransformStripManagedFields()},
		// Rooms name Secrets of their own: all of a namespace's Secrets are
		// watched, but the reconciler only ever asks for their metadata.
		&corev1.Secret{}: {Transform: cache.TransformStripManagedFields()},
	}}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}
