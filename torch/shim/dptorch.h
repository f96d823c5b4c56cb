/* dptorch.h: the plain C API of deeppacket's libtorch shim.
 *
 * Go sees only this header; the shim (dptorch.cpp) sees no Go types. Every
 * function that can fail returns a dpt_error: NULL on success, otherwise a
 * malloc'd message (the C++ exception's text) that the caller frees with
 * dpt_free_error. No C++ exception crosses this boundary. dpt_free_error and
 * dpt_free_string are the loader's (load.c), which frees what the shim
 * allocated with the same malloc.
 */
#ifndef DPTORCH_H
#define DPTORCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef char *dpt_error;
typedef struct dpt_tensor_s *dpt_tensor;   /* an at::Tensor handle */
typedef struct dpt_ivalue_s *dpt_ivalue;   /* a c10::IValue (pickle data) */
typedef struct dpt_module_s *dpt_module;   /* a torch::jit::Module */
typedef struct dpt_pg_s *dpt_pg;           /* a c10d Gloo process group and its store */
typedef struct dpt_ddp_s *dpt_ddp;         /* DistributedDataParallel's state: c10d's Reducer */

/* dtypes, in the order of dpt_dtype() */
enum { DPT_FLOAT32 = 0, DPT_FLOAT64 = 1, DPT_INT64 = 2, DPT_UINT8 = 3, DPT_BOOL = 4, DPT_INT32 = 5 };

void dpt_free_error(dpt_error err);
void dpt_free_string(char *s);

/* process-wide settings */
int dpt_cuda_is_available(void);
int dpt_cuda_device_count(void);
int dpt_cuda_library(void); /* 1: libtorch_cuda.so is beside libtorch_cpu (loaded or not) */
char *dpt_torch_version(void);        /* libtorch's version, as "2.15.0"; free with dpt_free_string */
int dpt_cuda_runtime_version(void);   /* the CUDA runtime libtorch was built with (13020), or 0 without CUDA */
dpt_error dpt_manual_seed(uint64_t seed);
void dpt_set_num_threads(int n);
int dpt_get_num_threads(void);
void dpt_set_grad_enabled(int enabled); /* thread-local, as in PyTorch */
int dpt_is_grad_enabled(void);
typedef struct dpt_inference_s *dpt_inference;
dpt_error dpt_inference_mode_enter(dpt_inference *out); /* c10::InferenceMode on this thread until exit */
void dpt_inference_mode_exit(dpt_inference g);

/* tensor life and data */
void dpt_free(dpt_tensor t);
dpt_error dpt_from_data(const void *data, const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out);
dpt_error dpt_copy_out(dpt_tensor t, void *dst, int64_t nbytes, int dtype);
dpt_error dpt_full(const int64_t *shape, int ndim, double value, int dtype, const char *device, dpt_tensor *out);
dpt_error dpt_rand(const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out);
dpt_error dpt_randn(const int64_t *shape, int ndim, int dtype, const char *device, dpt_tensor *out);
int dpt_dim(dpt_tensor t);
void dpt_shape(dpt_tensor t, int64_t *out);
void dpt_stride(dpt_tensor t, int64_t *out);
int dpt_dtype(dpt_tensor t);
dpt_error dpt_device(dpt_tensor t, char **out);
dpt_error dpt_to(dpt_tensor t, const char *device, int dtype, dpt_tensor *out); /* dtype -1 keeps it */
dpt_error dpt_item(dpt_tensor t, double *out);
dpt_error dpt_to_string(dpt_tensor t, char **out);
dpt_error dpt_clone(dpt_tensor t, dpt_tensor *out);
dpt_error dpt_contiguous(dpt_tensor t, dpt_tensor *out);
dpt_error dpt_detach(dpt_tensor t, dpt_tensor *out);
dpt_error dpt_equal(dpt_tensor a, dpt_tensor b, int *out);

/* autograd */
dpt_error dpt_set_requires_grad(dpt_tensor t, int on);
int dpt_requires_grad(dpt_tensor t);
dpt_error dpt_backward(dpt_tensor t);
dpt_error dpt_grad(dpt_tensor t, dpt_tensor *out); /* *out NULL when no gradient */
dpt_error dpt_zero_grad(dpt_tensor t, int set_to_none);

/* in-place, outside autograd (initialisation, loading, optimiser state) */
dpt_error dpt_uniform_(dpt_tensor t, double from, double to);
dpt_error dpt_normal_(dpt_tensor t, double mean, double std);
dpt_error dpt_fill_(dpt_tensor t, double value);
dpt_error dpt_copy_(dpt_tensor dst, dpt_tensor src);

/* operations, named and defaulted as their PyTorch functions */
dpt_error dpt_conv1d(dpt_tensor x, dpt_tensor w, dpt_tensor b, int64_t stride, int64_t padding, int64_t dilation, int64_t groups, dpt_tensor *out);
dpt_error dpt_max_pool1d(dpt_tensor x, int64_t kernel, int64_t stride, int64_t padding, int64_t dilation, int ceil_mode, dpt_tensor *out);
dpt_error dpt_linear(dpt_tensor x, dpt_tensor w, dpt_tensor b, dpt_tensor *out);
dpt_error dpt_batch_norm(dpt_tensor x, dpt_tensor w, dpt_tensor b, dpt_tensor mean, dpt_tensor var, int training, double momentum, double eps, dpt_tensor *out);
dpt_error dpt_dropout(dpt_tensor x, double p, int training, dpt_tensor *out);
dpt_error dpt_new_empty(dpt_tensor x, const int64_t *shape, int ndim, dpt_tensor *out); /* x.new_empty(shape) */
dpt_error dpt_unary(int op, dpt_tensor x, dpt_tensor *out);
/* out = relu(x * scale + shift) (scale and shift per channel, dim 1; NULL:
 * 1 and 0), written into out, a tensor (or view) of x's shape that does not
 * overlap x */
dpt_error dpt_affine_relu_into(dpt_tensor x, dpt_tensor scale, dpt_tensor shift, dpt_tensor out);
enum { DPT_RELU = 0, DPT_SIGMOID = 1, DPT_NEG = 2, DPT_SQRT = 3, DPT_EXP = 4, DPT_LOG = 5, DPT_TANH = 6, DPT_ABS = 7 };
dpt_error dpt_binary(int op, dpt_tensor a, dpt_tensor b, double alpha, dpt_tensor *out);
enum { DPT_ADD = 0, DPT_SUB = 1, DPT_MUL = 2, DPT_DIV = 3, DPT_ADD_ = 4, DPT_EQ = 5 };
dpt_error dpt_scalar_op(int op, dpt_tensor a, double s, dpt_tensor *out); /* op: DPT_ADD, DPT_SUB, DPT_MUL, DPT_DIV */
dpt_error dpt_pad(dpt_tensor x, const int64_t *pad, int npad, double value, dpt_tensor *out);
dpt_error dpt_transpose(dpt_tensor x, int64_t d0, int64_t d1, dpt_tensor *out);
dpt_error dpt_reshape(dpt_tensor x, const int64_t *shape, int ndim, int view, dpt_tensor *out);
dpt_error dpt_flatten(dpt_tensor x, int64_t start, int64_t end, dpt_tensor *out);
dpt_error dpt_narrow(dpt_tensor x, int64_t dim, int64_t start, int64_t length, dpt_tensor *out);
dpt_error dpt_expand(dpt_tensor x, const int64_t *shape, int ndim, dpt_tensor *out);
dpt_error dpt_reduce(int op, dpt_tensor x, const int64_t *dims, int ndims, int keepdim, dpt_tensor *out);
enum { DPT_MEAN = 0, DPT_SUM = 1 };
dpt_error dpt_cat(const dpt_tensor *ts, int n, int64_t dim, int stack, dpt_tensor *out);
dpt_error dpt_cross_entropy(dpt_tensor logits, dpt_tensor target, dpt_tensor weight, int64_t reduction, int64_t ignore_index, double label_smoothing, dpt_tensor *out);
dpt_error dpt_mse_loss(dpt_tensor x, dpt_tensor target, int64_t reduction, dpt_tensor *out);
dpt_error dpt_softmax(dpt_tensor x, int64_t dim, int log, dpt_tensor *out);
dpt_error dpt_argmax(dpt_tensor x, int64_t dim, int keepdim, dpt_tensor *out);

/* optimisers: one call updates every parameter, as torch.optim's step() */
dpt_error dpt_adam_step(const dpt_tensor *params, dpt_tensor *exp_avg, dpt_tensor *exp_avg_sq, double *steps, int n,
                        double lr, double beta1, double beta2, double eps, double weight_decay, int fused);
dpt_error dpt_sgd_step(const dpt_tensor *params, dpt_tensor *momentum_buffer, int n, double lr, double momentum, double dampening,
                       double weight_decay, int nesterov);

/* pickle data in torch.save's format (written only: ckpt reads it) */
void dpt_ivalue_free(dpt_ivalue v);
dpt_ivalue dpt_ivalue_none(void);
dpt_ivalue dpt_ivalue_bool(int b);
dpt_ivalue dpt_ivalue_int(int64_t i);
dpt_ivalue dpt_ivalue_double(double d);
dpt_ivalue dpt_ivalue_string(const char *s);
dpt_ivalue dpt_ivalue_tensor(dpt_tensor t);
dpt_ivalue dpt_ivalue_list(void);
dpt_error dpt_ivalue_list_append(dpt_ivalue list, dpt_ivalue item);
dpt_ivalue dpt_ivalue_dict(void);
dpt_error dpt_ivalue_dict_insert(dpt_ivalue dict, dpt_ivalue key, dpt_ivalue value);
dpt_error dpt_pickle_save(dpt_ivalue v, const char *path);

/* TorchScript */
dpt_error dpt_module_new(const char *name, dpt_module *out);
dpt_error dpt_module_register(dpt_module m, const char *name, dpt_tensor t, int is_buffer);
dpt_error dpt_module_define(dpt_module m, const char *source);
dpt_error dpt_module_save(dpt_module m, const char *path);
dpt_error dpt_module_load(const char *path, const char *device, dpt_module *out);
dpt_error dpt_module_eval(dpt_module m);
dpt_error dpt_module_forward(dpt_module m, const dpt_tensor *inputs, int n, dpt_tensor *out);
void dpt_module_free(dpt_module m);

/* c10d (dist.cpp): the store and the Gloo process group of
 * torch.distributed's init_process_group("gloo", "env://"), with its key
 * prefixes. host_store: this rank runs the TCPStore server (rank 0, unless
 * torchrun's agent already runs one); prefix (or "") goes before all keys.
 * Collectives work in place. */
dpt_error dpt_pg_new(const char *host, int port, int rank, int world, int host_store, int64_t timeout_ms, const char *prefix,
                     dpt_pg *out);
void dpt_pg_free(dpt_pg pg);
dpt_error dpt_pg_allreduce_sum(dpt_pg pg, const dpt_tensor *ts, int n);
dpt_error dpt_pg_broadcast(dpt_pg pg, const dpt_tensor *ts, int n, int root);
dpt_error dpt_pg_store_set(dpt_pg pg, const char *key, const char *value); /* the group's store (its prefix) */
dpt_error dpt_pg_store_check(dpt_pg pg, const char *key, int *present);
dpt_error dpt_ddp_new(dpt_pg pg, const dpt_tensor *params, int n_params, const dpt_tensor *buffers, int n_buffers,
                      int find_unused, dpt_ddp *out);
void dpt_ddp_free(dpt_ddp d);
dpt_error dpt_ddp_pre_forward(dpt_ddp d);
dpt_error dpt_ddp_post_forward(dpt_ddp d, const dpt_tensor *outputs, int n);
dpt_error dpt_randperm(int64_t n, uint64_t seed, dpt_tensor *out); /* torch.randperm(n, generator seeded with seed) */

#ifdef __cplusplus
}
#endif
#endif
