package controllers

import (
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	chatv1alpha1 "github.com/hubbub-chat/hubbub/api/v1alpha1"
)

// ControllerName names the controller (in logs and metrics) and the Events' reporter.
const ControllerName = "hubbub-operator"

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
// ChatRooms and the objects they own. Secrets are not watched: the operator
// may not read them. A Secret that appears shows in the pods' status, which
// the periodic reconcile (Options.PresenceInterval) reads.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	opts, err := r.Options.withDefaults()
	if err != nil {
		return err
	}
	r.Options = opts
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
		WithOptions(controller.Options{MaxConcurrentReconciles: opts.MaxConcurrentReconciles}).
		Complete(r)
}

// CacheOptions configure the manager's cache for the operator: owned kinds
// are cached only when labelled as managed by it (not every Deployment or
// ConfigMap of the cluster), and only the given namespaces (none: all).
// Secrets are never cached: the operator may not list or watch them.
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
		// Pods are only listed (what their kubelets report), never applied.
		&corev1.Pod{}: {Label: owned.Label, Transform: cache.TransformStripManagedFields()},
	}}
	if len(namespaces) > 0 {
		opts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	return opts
}
