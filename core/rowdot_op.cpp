/* core/rowdot.c's kernels as operators the dispatcher runs without Python.
 *
 * A compiled step (core/compiled.py) calls its products through the dispatcher, 113 calls a step of
 * the 1.5B target. With the kernels registered from Python each call took the interpreter: the boxed
 * arguments made Python objects, a lambda, the checks of rowdot.sums, a ctypes call, a conversion,
 * about 25 us a call, 3 ms of a 41 ms step (thirty-first session, Zen 5). Here the same work is C++:
 * the rows made contiguous, float32 sums from the kernel, rounded once to the rows' dtype by the same
 * conversion (at::Tensor::to) rowdot.linear ends with, so the numbers are the Python path's bit for
 * bit. The kernels are not linked in: core/rowdot.py loads them (ctypes) and hands their addresses
 * over (specscope_rowdot_ops_init) before a step runs; an operator whose kernel was not handed over
 * refuses to run.
 *
 * Built by core/rowdot_ops.py (``native()``) with the C++ compiler against the installed torch's headers;
 * where that fails, the Python kernels stay registered instead. */
#include <ATen/core/Tensor.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstdint>
#include <optional>

namespace {

using il_fn = void (*)(const uint16_t *, const uint16_t *, const float *, float *, long, long, long, int, int);
using amx_fn = void (*)(const uint16_t *, const uint16_t *, const float *, float *, long, long, long, int);
using i8_fn = void (*)(const float *, const int8_t *, const float *, const float *, float *, long, long, long, int);

il_fn il_kernel = nullptr;
amx_fn amx_kernel = nullptr;
i8_fn i8_kernel = nullptr;

const float *bias_of(const std::optional<at::Tensor> &b, long O) {
    if (!b.has_value()) return nullptr;
    TORCH_CHECK(b->scalar_type() == at::kFloat && b->is_contiguous() && b->numel() == O,
                "rowdot: the bias must be a contiguous float32 vector of the outputs' size");
    return b->data_ptr<float>();
}

/* x's leading dims with O outputs, from the (n, O) float32 sums y, in x's dtype */
at::Tensor finish(const at::Tensor &x, const at::Tensor &y, long O) {
    auto sizes = x.sizes().vec();
    sizes.back() = O;
    return y.to(x.scalar_type()).view(sizes);
}

/* The bfloat16 products (rowdot_il, rowdot_amx): the checks, the rows made contiguous, the float32
 * sums from `kernel(x, w, bias, y, n, K, O, threads)`, then `finish`. */
template <typename Kernel>
at::Tensor bf16_product(const char *name, const char *pack, bool ready, const at::Tensor &x, const at::Tensor &w,
                        const std::optional<at::Tensor> &b, Kernel kernel) {
    TORCH_CHECK(ready, name, ": the kernel was not handed over (core.rowdot_ops)");
    TORCH_CHECK(x.scalar_type() == at::kBFloat16 && w.scalar_type() == at::kBFloat16 && x.device().is_cpu(), name,
                " takes bfloat16 CPU rows and a weight from rowdot.", pack);
    TORCH_CHECK(w.dim() == 2 && w.is_contiguous(), name, ": a packed 2-D weight");
    const long O = w.size(0), K = w.size(1);
    TORCH_CHECK(x.size(-1) == K, name, ": rows of ", x.size(-1), " columns against a weight of ", K);
    auto x2 = x.reshape({-1, K}).contiguous();
    const long n = x2.size(0);
    auto y = at::empty({n, O}, x.options().dtype(at::kFloat));
    if (n)
        kernel(reinterpret_cast<const uint16_t *>(x2.data_ptr()), reinterpret_cast<const uint16_t *>(w.data_ptr()),
               bias_of(b, O), y.data_ptr<float>(), n, K, O, at::get_num_threads());
    return finish(x, y, O);
}

at::Tensor rowdot_il(const at::Tensor &x, const at::Tensor &w, const std::optional<at::Tensor> &b, int64_t layout) {
    return bf16_product("rowdot_il", "pack", il_kernel != nullptr, x, w, b,
                        [layout](const uint16_t *xp, const uint16_t *wp, const float *bp, float *y, long n, long K, long O, int t) {
                            il_kernel(xp, wp, bp, y, n, K, O, t, static_cast<int>(layout));
                        });
}

at::Tensor rowdot_amx(const at::Tensor &x, const at::Tensor &w, const std::optional<at::Tensor> &b) {
    return bf16_product("rowdot_amx", "pack_amx", amx_kernel != nullptr, x, w, b, amx_kernel);
}

at::Tensor rowdot_i8(const at::Tensor &x, const at::Tensor &w, const at::Tensor &s, const std::optional<at::Tensor> &b) {
    TORCH_CHECK(i8_kernel != nullptr, "rowdot_i8: the kernel was not handed over (core.rowdot_ops)");
    TORCH_CHECK(w.scalar_type() == at::kChar && x.device().is_cpu(), "rowdot_i8 takes CPU rows and a weight from rowdot.pack_i8");
    TORCH_CHECK(s.scalar_type() == at::kFloat && s.is_contiguous() && w.is_contiguous(), "rowdot_i8: float32 scales");
    const long O = s.size(0), K = x.size(-1);
    TORCH_CHECK(w.numel() == O * K, "rowdot_i8: a weight of ", w.numel(), " values for ", O, " x ", K);
    auto x2 = x.reshape({-1, K}).to(at::kFloat).contiguous();
    const long n = x2.size(0);
    auto y = at::empty({n, O}, x.options().dtype(at::kFloat));
    if (n)
        i8_kernel(x2.data_ptr<float>(), w.data_ptr<int8_t>(), s.data_ptr<float>(), bias_of(b, O), y.data_ptr<float>(), n, K, O,
                  at::get_num_threads());
    return finish(x, y, O);
}

}  // namespace

extern "C" void specscope_rowdot_ops_init(void *il, void *amx, void *i8) {
    il_kernel = reinterpret_cast<il_fn>(il);
    amx_kernel = reinterpret_cast<amx_fn>(amx);
    i8_kernel = reinterpret_cast<i8_fn>(i8);
}

TORCH_LIBRARY_FRAGMENT(specscope, m) {
    m.def("rowdot_il(Tensor x, Tensor w, Tensor? b, int layout) -> Tensor");
    m.def("rowdot_amx(Tensor x, Tensor w, Tensor? b) -> Tensor");
    m.def("rowdot_i8(Tensor x, Tensor w, Tensor s, Tensor? b) -> Tensor");
}

TORCH_LIBRARY_IMPL(specscope, CPU, m) {
    m.impl("rowdot_il", &rowdot_il);
    m.impl("rowdot_amx", &rowdot_amx);
    m.impl("rowdot_i8", &rowdot_i8);
}
