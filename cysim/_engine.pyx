# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
# distutils: language = c++
"""Compiled integrator of the virtual chip (see :mod:`cysim.engine` for the equations).

One call integrates a batch of independent trials of one configuration. Trials run in
parallel (OpenMP) on separate state; every trial owns its random streams, so a trial's
result does not depend on the batch it ran in or on the thread that ran it.

Each step runs two branch-free, vectorised kernels over the integrated circuits (the C
block below): ``cysim_adex_step`` for the nonlinear circuits (exponential term,
adaptation, COBA; they come first in the local order) and ``cysim_lif_step`` for the
linear ones. Each does the whole step of a circuit in one pass: membrane update, synaptic
decay, membrane noise, rails, refractory clamp and threshold. Only the exponentials of the
nonlinear circuits are scalar calls to libm's ``exp`` (the same function the reference
engine uses, so results stay equal). Spiking circuits are then collected, reset and routed
by scalar code.

Temporal noise (membrane OU increments, passive OU samples, readout noise) draws from one
xorshift64 stream per circuit and trial: the sum of the four 16-bit fields of one draw,
standardised (an Irwin-Hall variate: exactly zero mean and unit variance, support
+-3.46 sigma, excess kurtosis -0.3). The Poisson background generators use xoshiro256+.
"""

from cython.parallel cimport prange
from libc.math cimport log, llround
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libcpp.vector cimport vector

import numpy as np

cdef extern from *:
    """
    #include <math.h>
    #include <stddef.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #define CYSIM_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CYSIM_CLONES
    #endif
    #if defined(__GNUC__)
    #define CYSIM_INLINE static inline __attribute__((always_inline))
    #else
    #define CYSIM_INLINE static inline
    #endif
    #define R __restrict__

    /* Per-circuit parameters of the step kernels (local circuit order). */
    typedef struct {
        const double *e_l, *p_mem, *p_vexc, *p_vinh, *p_vconst, *i_bias, *p_exc, *p_inh;
        const double *bias_step;  /* i_bias * p_vconst */
        const double *v_reset, *v_th, *sigma;
        const double *v_th_spike;  /* v_th, or +inf where spiking is off */
        /* nonlinear circuits (the first n_special of the local order) */
        const double *v_t, *delta_t, *exp_scale, *inv_tau_m, *f_exc, *f_inh, *e_rev_e, *e_rev_i;
        const double *p_w, *a, *m_exp, *m_adapt, *m_coba;
    } cysim_circuits;

    /* Gaussian noise: one xorshift64 stream per circuit (one 64-bit lane per double lane,
       so the kernels vectorise without conversions); the four 16-bit fields of one draw
       are summed (Irwin-Hall of 4 uniforms: mean 131070, standard deviation
       sqrt((2^32 - 1)/3) = 37837.23, support +-3.46 sigma). The sum (< 2^18) becomes a
       double exactly through the 2^52 exponent trick. */
    CYSIM_INLINE double cysim_gauss(uint64_t* R state)
    {
        uint64_t x = *state;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        *state = x;
        uint64_t s = (x & 0x0000FFFF0000FFFFull) + ((x >> 16) & 0x0000FFFF0000FFFFull);
        s = (s & 0xFFFFFFFFull) + (s >> 32);
        double u = __builtin_bit_cast(double, s | 0x4330000000000000ull);  /* 2^52 + s */
        return (u - (4503599627370496.0 + 131070.0)) * (1.0 / 37837.2);
    }

    /* The kernels below read the parameters through restrict-qualified locals, so the
       compiler knows that they do not alias the state it writes. */
    #define CYSIM_UNPACK(c) \
        const double *R e_l = (c)->e_l, *R p_mem = (c)->p_mem, *R p_vexc = (c)->p_vexc, \
            *R p_vinh = (c)->p_vinh, *R p_exc = (c)->p_exc, *R p_inh = (c)->p_inh, \
            *R v_reset = (c)->v_reset, *R v_th_spike = (c)->v_th_spike, *R sigma = (c)->sigma

    /* Exact step of the linear part (leak, decaying synaptic currents, constant current)
       of one circuit from v; icur_step is the constant current times p_vconst. */
    CYSIM_INLINE double cysim_linear(double e_l, double p_mem, double v, double ie,
                                     double p_vexc, double ii, double p_vinh, double icur_step)
    {
        return e_l + (v - e_l) * p_mem + ie * p_vexc - ii * p_vinh + icur_step;
    }

    /* End of a step for circuit i with the new membrane vn (a local variable), branch-free:
       membrane noise (if `noisy`), supply rails, refractory clamp (the counters are
       doubles so every lane is a double) and threshold comparison. Stores the membrane and
       the counter; a threshold crossing of a spiking circuit outside the refractory period
       sets `h` to 1 (else 0) and marks the circuit with the counter -1 (the caller then
       sets the refractory counter of every marked circuit). A macro rather than a function
       with output pointers, which would keep GCC from vectorising the loops. */
    #define CYSIM_FINISH(i, vn, h) do { \
        if (noisy) vn += sigma[i] * cysim_gauss(state + (i)); \
        double r_ = ref[i], vr_ = v_reset[i], th_ = v_th_spike[i]; \
        vn = vn < 0.0 ? 0.0 : vn; \
        vn = vn > rail ? rail : vn; \
        int in_ref_ = r_ > 0.0; \
        vn = in_ref_ ? vr_ : vn; \
        vnew[i] = vn; \
        h = (!in_ref_ & (vn >= th_)) ? 1.0 : 0.0; \
        ref[i] = in_ref_ ? r_ - 1.0 : -h; \
    } while (0)

    /* Linear circuits [lo, hi): exact linear step, synaptic decay, membrane noise, rails,
       refractory clamp and threshold in one pass. Returns
       whether any circuit crossed its threshold. */
    CYSIM_INLINE int cysim_lif_body(const cysim_circuits* R c, int lo, int hi, double rail,
                                       const double* R v, double* R ie, double* R ii,
                                       double* R ref, uint64_t* R state, double* R vnew,
                                       const int noisy)
    {
        CYSIM_UNPACK(c);
        const double *R bias_step = c->bias_step;
        uint64_t hits = 0;
        #pragma omp simd reduction(|:hits)
        for (ptrdiff_t i = lo; i < hi; ++i) {
            double vn = cysim_linear(e_l[i], p_mem[i], v[i], ie[i], p_vexc[i], ii[i], p_vinh[i],
                                     bias_step[i]);
            ie[i] *= p_exc[i];
            ii[i] *= p_inh[i];
            double h;
            CYSIM_FINISH(i, vn, h);
            hits |= h != 0.0;
        }
        return (int)hits;
    }

    CYSIM_CLONES static int cysim_lif_step(
        const cysim_circuits* R c, int lo, int hi, double rail, const double* R v,
        double* R ie, double* R ii, double* R ref, uint64_t* R state, double* R vnew,
        int noisy)
    {
        return noisy ? cysim_lif_body(c, lo, hi, rail, v, ie, ii, ref, state, vnew, 1)
                     : cysim_lif_body(c, lo, hi, rail, v, ie, ii, ref, state, vnew, 0);
    }

    /* Nonlinear circuits [0, ns) (exponential term, adaptation, COBA input), exponential
       Euler with the same arithmetic as the reference engine:
       1. (vectorised) exponent of the exponential term, clamped at 30, and the total
          conductance of COBA circuits;
       2. (scalar, libm exp) the exponentials that are switched on;
       3. (vectorised, branch-free) currents, CUBA or COBA membrane step, adaptation,
          synaptic decay, then noise, rails, refractory clamp and threshold as for linear
          circuits. `sa`, `sb` hold ns doubles of scratch space. */
    CYSIM_INLINE int cysim_adex_body(const cysim_circuits* R c, int ns, double dt,
                                        double rail, const double* R v, double* R ie,
                                        double* R ii, double* R w, double* R ref,
                                        uint64_t* R state, double* R vnew,
                                        double* R sa, double* R sb, const int noisy)
    {
        CYSIM_UNPACK(c);
        const double *R i_bias = c->i_bias, *R p_vconst = c->p_vconst;
        const double *R v_t = c->v_t, *R delta_t = c->delta_t, *R exp_scale = c->exp_scale,
            *R inv_tau_m = c->inv_tau_m, *R f_exc = c->f_exc, *R f_inh = c->f_inh,
            *R e_rev_e = c->e_rev_e, *R e_rev_i = c->e_rev_i, *R p_w = c->p_w, *R a = c->a,
            *R m_exp = c->m_exp, *R m_adapt = c->m_adapt, *R m_coba = c->m_coba;
        #pragma omp simd
        for (ptrdiff_t i = 0; i < ns; ++i) {
            double arg = (v[i] - v_t[i]) / delta_t[i];
            sa[i] = arg < 30.0 ? arg : 30.0;
            sb[i] = inv_tau_m[i] + ie[i] * f_exc[i] + ii[i] * f_inh[i];
        }
        for (ptrdiff_t i = 0; i < ns; ++i)
            sa[i] = (m_exp[i] != 0.0 && sa[i] > -40.0) ? exp_scale[i] * exp(sa[i]) : 0.0;
        for (ptrdiff_t i = 0; i < ns; ++i)
            if (m_coba[i] != 0.0) sb[i] = exp(-dt * sb[i]);
        uint64_t hits = 0;
        #pragma omp simd reduction(|:hits)
        for (ptrdiff_t i = 0; i < ns; ++i) {
            double vi = v[i], el = e_l[i], wi = w[i], pw = p_w[i], itm = inv_tau_m[i];
            double icur = i_bias[i] + sa[i];
            icur = m_adapt[i] != 0.0 ? icur - wi : icur;
            w[i] = m_adapt[i] != 0.0 ? wi * pw + a[i] * (vi - el) * (1.0 - pw) : wi;
            /* COBA: exact solution for the step-averaged conductances */
            double ge = ie[i] * f_exc[i], gi = ii[i] * f_inh[i];
            double gtot = itm + ge + gi;
            double vinf = (el * itm + ge * e_rev_e[i] + gi * e_rev_i[i] + icur) / gtot;
            double vcoba = vinf + (vi - vinf) * sb[i];
            double vn = cysim_linear(el, p_mem[i], vi, ie[i], p_vexc[i], ii[i], p_vinh[i],
                                     icur * p_vconst[i]);
            vn = m_coba[i] != 0.0 ? vcoba : vn;
            ie[i] *= p_exc[i];
            ii[i] *= p_inh[i];
            double h;
            CYSIM_FINISH(i, vn, h);
            hits |= h != 0.0;
        }
        return (int)hits;
    }

    CYSIM_CLONES static int cysim_adex_step(
        const cysim_circuits* R c, int ns, double dt, double rail, const double* R v,
        double* R ie, double* R ii, double* R w, double* R ref, uint64_t* R state,
        double* R vnew, double* R sa, double* R sb, int noisy)
    {
        return noisy ? cysim_adex_body(c, ns, dt, rail, v, ie, ii, w, ref, state, vnew, sa, sb, 1)
                     : cysim_adex_body(c, ns, dt, rail, v, ie, ii, w, ref, state, vnew, sa, sb, 0);
    }

    /* Lists the circuits marked as spiking (refractory counter -1) in `spiked` with the
       fraction of the step at which V crossed the threshold (linear interpolation);
       returns their number. */
    static int cysim_collect_spikes(int n, const double* R v_th, const double* R v,
                                    const double* R vnew, const double* R ref,
                                    int32_t* R spiked, double* R frac)
    {
        int count = 0;
        for (int i = 0; i < n; ++i) {
            if (ref[i] < 0.0) {
                double vi = v[i], vn = vnew[i];
                double f = vn > vi ? (v_th[i] - vi) / (vn - vi) : 0.0;
                spiked[count] = i;
                frac[count] = f < 0.0 ? 0.0 : f;
                ++count;
            }
        }
        return count;
    }

    /* One CADC sample of all circuits: passive circuits advance their exact
       Ornstein-Uhlenbeck process to this sample; every channel applies its gain, offset
       and readout noise, rounds and saturates to 8 bit (vectorised), and the codes are
       scattered to global circuit order. `buf` holds n_total int32 of scratch space. */
    CYSIM_CLONES static void cysim_cadc_sample(
        int n_total, int n, const double* R v, double* R vq, const double* R e_l,
        const double* R rho, const double* R psig, int advance, const double* R gain,
        const double* R offset, double noise, uint64_t* R state, const int64_t* R order,
        int32_t* R buf, uint8_t* R out)
    {
        ptrdiff_t np = n_total - n;
        if (advance) {
            #pragma omp simd
            for (ptrdiff_t j = 0; j < np; ++j)
                vq[j] = e_l[n + j] + (vq[j] - e_l[n + j]) * rho[n + j]
                        + psig[n + j] * cysim_gauss(state + n + j);
        }
        #pragma omp simd
        for (ptrdiff_t j = 0; j < n; ++j) {
            double x = v[j] * gain[j] + offset[j] + noise * cysim_gauss(state + j);
            x = x < 0.0 ? 0.0 : (x > 255.0 ? 255.0 : x);
            buf[j] = (int32_t)(x + 0.5);
        }
        #pragma omp simd
        for (ptrdiff_t j = 0; j < np; ++j) {
            double x = vq[j] * gain[n + j] + offset[n + j] + noise * cysim_gauss(state + n + j);
            x = x < 0.0 ? 0.0 : (x > 255.0 ? 255.0 : x);
            buf[n + j] = (int32_t)(x + 0.5);
        }
        for (ptrdiff_t j = 0; j < n_total; ++j) out[order[j]] = (uint8_t)buf[j];
    }

    /* Events that arrive in this step: add the ring-buffer slot, then clear it. */
    CYSIM_CLONES static void cysim_add_clear(int n, double* R dst, double* R src)
    {
        #pragma omp simd
        for (int i = 0; i < n; ++i) { dst[i] += src[i]; src[i] = 0.0; }
    }
    """
    ctypedef struct cysim_circuits:
        const double* e_l
        const double* p_mem
        const double* p_vexc
        const double* p_vinh
        const double* p_vconst
        const double* i_bias
        const double* p_exc
        const double* p_inh
        const double* bias_step
        const double* v_reset
        const double* v_th
        const double* sigma
        const double* v_th_spike
        const double* v_t
        const double* delta_t
        const double* exp_scale
        const double* inv_tau_m
        const double* f_exc
        const double* f_inh
        const double* e_rev_e
        const double* e_rev_i
        const double* p_w
        const double* a
        const double* m_exp
        const double* m_adapt
        const double* m_coba
    double cysim_gauss(uint64_t* state) noexcept nogil
    int cysim_lif_step(const cysim_circuits* c, int lo, int hi, double rail, const double* v,
                          double* ie, double* ii, double* ref, uint64_t* state, double* vnew,
                          int noisy) noexcept nogil
    int cysim_adex_step(const cysim_circuits* c, int ns, double dt, double rail,
                           const double* v, double* ie, double* ii, double* w, double* ref,
                           uint64_t* state, double* vnew, double* sa, double* sb,
                           int noisy) noexcept nogil
    int cysim_collect_spikes(int n, const double* v_th, const double* v, const double* vnew,
                             const double* ref, int32_t* spiked, double* frac) noexcept nogil
    void cysim_add_clear(int n, double* dst, double* src) noexcept nogil
    void cysim_cadc_sample(int n_total, int n, const double* v, double* vq, const double* e_l,
                           const double* rho, const double* psig, int advance, const double* gain,
                           const double* offset, double noise, uint64_t* state,
                           const int64_t* order, int32_t* buf, uint8_t* out) noexcept nogil


cdef enum:
    F_ADAPT = 4

cdef struct Params:
    double dt
    int64_t n_steps
    int n
    double latency
    double rail
    int ring_len
    # per circuit (local order; the n_special nonlinear circuits come first)
    cysim_circuits c
    const double* b
    const double* ref_steps
    const uint8_t* flags
    int n_special  # circuits with exponential term, adaptation or COBA input
    int has_noise
    # routing
    const int64_t* key_ptr
    const int32_t* key_target
    const double* key_amp
    const int64_t* out_ptr
    const int32_t* out_keys
    # stimulus
    const int64_t* ev_ptr
    const int64_t* ev_step
    const int32_t* ev_key
    # background generators
    int n_bg
    const uint8_t* bg_mode
    const double* bg_period
    const int64_t* bg_ptr
    const int32_t* bg_keys
    const uint64_t* bg_seeds
    const uint64_t* noise_seeds
    # passive circuits (no input; only read out) follow the n active ones
    int n_total
    const double* passive_rho
    const double* passive_sigma
    # readout gain/offset/noise per local circuit (LSB)
    const double* cadc_gain
    const double* cadc_offset
    double cadc_noise
    const double* madc_gain
    const double* madc_offset
    double madc_noise
    # readout
    int64_t n_cadc
    const int64_t* cadc_steps
    uint8_t* cadc_out
    const int64_t* order
    int n_madc
    const int32_t* madc_local
    int64_t n_madc_samples
    double madc_period
    uint16_t* madc_out


cdef struct Rng:  # xoshiro256+ (Poisson background generators)
    uint64_t s0
    uint64_t s1
    uint64_t s2
    uint64_t s3


cdef inline uint64_t _splitmix(uint64_t* x) noexcept nogil:
    x[0] += <uint64_t>0x9E3779B97F4A7C15
    cdef uint64_t z = x[0]
    z = (z ^ (z >> 30)) * <uint64_t>0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * <uint64_t>0x94D049BB133111EB
    return z ^ (z >> 31)


cdef inline void _seed(Rng* r, uint64_t seed) noexcept nogil:
    cdef uint64_t x = seed
    r.s0 = _splitmix(&x)
    r.s1 = _splitmix(&x)
    r.s2 = _splitmix(&x)
    r.s3 = _splitmix(&x)


cdef inline uint64_t _next(Rng* r) noexcept nogil:
    # xoshiro256+
    cdef uint64_t result = r.s0 + r.s3
    cdef uint64_t t = r.s1 << 17
    r.s2 ^= r.s0
    r.s3 ^= r.s1
    r.s1 ^= r.s2
    r.s0 ^= r.s3
    r.s2 ^= t
    r.s3 = (r.s3 << 45) | (r.s3 >> 19)
    return result


cdef inline double _uniform(Rng* r) noexcept nogil:
    """Uniform in (0, 1]."""
    return ((_next(r) >> 11) + 1) * (1.0 / 9007199254740992.0)


cdef inline void _deliver(const Params* p, double* ring, int slot, int32_t key) noexcept nogil:
    cdef int64_t k
    cdef double* dst = ring + <int64_t>slot * 2 * p.n
    for k in range(p.key_ptr[key], p.key_ptr[key + 1]):
        dst[p.key_target[k]] += p.key_amp[k]


cdef int _run_trial(const Params* p, int64_t trial, vector[int32_t]* sp_circ_out,
                    vector[double]* sp_time_out) noexcept nogil:
    # spikes are collected locally and handed over at the end: vectors of neighbouring
    # trials share cache lines, and other threads write them
    cdef vector[int32_t] sp_circ_local
    cdef vector[double] sp_time_local
    cdef vector[int32_t]* sp_circ = &sp_circ_local
    cdef vector[double]* sp_time = &sp_time_local
    cdef const cysim_circuits* c = &p.c
    cdef int n = p.n
    cdef int ns = p.n_special
    cdef int L = p.ring_len
    cdef double dt = p.dt
    cdef int nn = n if n > 0 else 1
    cdef double* v = <double*>malloc(nn * sizeof(double))
    cdef double* vnew = <double*>malloc(nn * sizeof(double))
    cdef double* w = <double*>calloc(nn, sizeof(double))
    cdef double* syn = <double*>calloc(2 * nn, sizeof(double))  # [exc..., inh...]
    cdef double* ring = <double*>calloc(<int64_t>L * 2 * nn, sizeof(double))
    cdef double* ref = <double*>calloc(nn, sizeof(double))
    cdef double* sa = <double*>malloc(nn * sizeof(double))
    cdef double* sb = <double*>malloc(nn * sizeof(double))
    cdef int32_t* cbuf = <int32_t*>malloc(p.n_total * sizeof(int32_t))
    cdef uint8_t* dirty = <uint8_t*>calloc(L, sizeof(uint8_t))
    cdef uint64_t* nstate = <uint64_t*>malloc(p.n_total * sizeof(uint64_t))
    cdef double* bg_next = <double*>malloc((p.n_bg + 1) * sizeof(double))
    cdef Rng* bg_rng = <Rng*>malloc((p.n_bg + 1) * sizeof(Rng))
    cdef double* madc_prev = <double*>malloc((p.n_madc + 1) * sizeof(double))
    cdef double* vq = <double*>malloc((p.n_total - n + 1) * sizeof(double))
    cdef int32_t* spiked = <int32_t*>malloc(nn * sizeof(int32_t))
    cdef double* sfrac = <double*>malloc(nn * sizeof(double))
    cdef double* vbuf0 = v
    cdef double* vbuf1 = vnew
    cdef double* tmp
    cdef int n_spiked
    if v == NULL or vnew == NULL or w == NULL or syn == NULL or ring == NULL or ref == NULL \
            or sa == NULL or sb == NULL or cbuf == NULL or dirty == NULL \
            or nstate == NULL or bg_next == NULL or bg_rng == NULL or madc_prev == NULL \
            or vq == NULL or spiked == NULL or sfrac == NULL:
        free(v); free(vnew); free(w); free(syn); free(ring); free(ref); free(sa)
        free(sb); free(cbuf); free(dirty); free(nstate); free(bg_next); free(bg_rng)
        free(madc_prev); free(vq); free(spiked); free(sfrac)
        return -1
    cdef double* ie = syn
    cdef double* ii = syn + n
    cdef int i, g, m, slot, j, s
    cdef int32_t key
    cdef int64_t step, k, arrival, ks
    cdef int64_t ev = p.ev_ptr[trial]
    cdef int64_t ev_end = p.ev_ptr[trial + 1]
    cdef int64_t cadc_next = 0
    cdef int64_t madc_next = 0
    cdef double t, t_end, vi, frac, ts, tk
    cdef int hits
    cdef uint64_t x
    cdef uint8_t* cadc_out = p.cadc_out + trial * p.n_cadc * p.n_total
    cdef uint16_t* madc_out = p.madc_out + trial * p.n_madc_samples * p.n_madc
    cdef double mval
    cdef double madc_sf[2]  # fraction of the step at which a MADC circuit spiked, or 2
    cdef int any_bg = 0

    x = p.noise_seeds[trial] ^ <uint64_t>0x5DEECE66D
    for i in range(n):
        v[i] = c.e_l[i]
    for j in range(p.n_total):
        nstate[j] = _splitmix(&x) | 1u  # xorshift64 needs a non-zero state
    for j in range(n, p.n_total):
        vq[j - n] = c.e_l[j]
    for g in range(p.n_bg):
        _seed(&bg_rng[g], p.bg_seeds[trial * p.n_bg + g])
        if p.bg_mode[g] != 0:
            any_bg = 1
        if p.bg_mode[g] == 1:
            bg_next[g] = -log(_uniform(&bg_rng[g])) * p.bg_period[g]
        else:
            bg_next[g] = p.bg_period[g]

    slot = 0  # ring-buffer slot of the current step: step % L
    for step in range(p.n_steps):
        t = step * dt
        t_end = t + dt
        # --- events arriving now -------------------------------------------------------
        if dirty[slot]:
            cysim_add_clear(2 * n, syn, ring + <int64_t>slot * 2 * n)
            dirty[slot] = 0
        while ev < ev_end and p.ev_step[ev] <= step:
            key = p.ev_key[ev]
            for k in range(p.key_ptr[key], p.key_ptr[key + 1]):
                syn[p.key_target[k]] += p.key_amp[k]
            ev += 1
        # --- background generators emit into the routing ------------------------------
        if any_bg:
            for g in range(p.n_bg):
                while p.bg_mode[g] != 0 and bg_next[g] < t_end:
                    arrival = llround((bg_next[g] + p.latency) / dt)
                    if arrival <= step:
                        arrival = step + 1
                    for ks in range(p.bg_ptr[g], p.bg_ptr[g + 1]):
                        _deliver(p, ring, <int>(arrival % L), p.bg_keys[ks])
                    dirty[arrival % L] = 1
                    if p.bg_mode[g] == 1:
                        bg_next[g] += -log(_uniform(&bg_rng[g])) * p.bg_period[g]
                    else:
                        bg_next[g] += p.bg_period[g]
        # --- CADC samples the state at t ----------------------------------------------
        if cadc_next < p.n_cadc and p.cadc_steps[cadc_next] == step:
            cysim_cadc_sample(p.n_total, n, v, vq, c.e_l, p.passive_rho, p.passive_sigma,
                              cadc_next > 0, p.cadc_gain, p.cadc_offset, p.cadc_noise, nstate,
                              p.order, cbuf, cadc_out + cadc_next * p.n_total)
            cadc_next += 1
        for m in range(p.n_madc):
            madc_prev[m] = v[p.madc_local[m]]
        madc_sf[0] = 2.0
        madc_sf[1] = 2.0
        # --- membranes: nonlinear circuits first, then the linear ones (kernels above) --
        hits = 0
        if ns > 0:
            hits = cysim_adex_step(c, ns, dt, p.rail, v, ie, ii, w, ref, nstate, vnew, sa, sb,
                                   p.has_noise)
        hits |= cysim_lif_step(c, ns, n, p.rail, v, ie, ii, ref, nstate, vnew, p.has_noise)
        # --- reset and routing of the spikes -------------------------------------------
        n_spiked = 0
        if hits:
            n_spiked = cysim_collect_spikes(n, c.v_th, v, vnew, ref, spiked, sfrac)
        for s in range(n_spiked):
            i = spiked[s]
            frac = sfrac[s]
            ts = t + frac * dt
            sp_circ.push_back(i)
            sp_time.push_back(ts)
            vnew[i] = c.v_reset[i]
            ref[i] = p.ref_steps[i]
            if p.flags[i] & F_ADAPT:
                w[i] += p.b[i]
            for m in range(p.n_madc):
                if p.madc_local[m] == i:
                    madc_sf[m] = frac
            if p.out_ptr[i + 1] > p.out_ptr[i]:
                arrival = llround((ts + p.latency) / dt)
                if arrival <= step:
                    arrival = step + 1
                for ks in range(p.out_ptr[i], p.out_ptr[i + 1]):
                    _deliver(p, ring, <int>(arrival % L), p.out_keys[ks])
                dirty[arrival % L] = 1
        tmp = v
        v = vnew
        vnew = tmp
        slot += 1
        if slot == L:
            slot = 0
        # --- MADC samples in [t, t_end), linear between the step's end points ----------
        while madc_next < p.n_madc_samples:
            tk = madc_next * p.madc_period
            if tk >= t_end:
                break
            frac = (tk - t) / dt
            for m in range(p.n_madc):
                i = p.madc_local[m]
                if madc_sf[m] > 1.0:
                    vi = madc_prev[m] + frac * (v[i] - madc_prev[m])
                elif frac < madc_sf[m]:
                    # rising to the threshold crossing, then the reset
                    vi = madc_prev[m] + frac / madc_sf[m] * (c.v_th[i] - madc_prev[m])
                else:
                    vi = v[i]
                mval = vi * p.madc_gain[i] + p.madc_offset[i]
                if p.madc_noise != 0.0:
                    mval = mval + p.madc_noise * cysim_gauss(&nstate[i])
                if mval < 0.0:
                    mval = 0.0
                elif mval > 1023.0:
                    mval = 1023.0
                madc_out[madc_next * p.n_madc + m] = <uint16_t>(mval + 0.5)
            madc_next += 1

    # a sample time that rounds to the end of the run reads the final state
    if cadc_next < p.n_cadc and p.cadc_steps[cadc_next] == p.n_steps:
        cysim_cadc_sample(p.n_total, n, v, vq, c.e_l, p.passive_rho, p.passive_sigma,
                          cadc_next > 0, p.cadc_gain, p.cadc_offset, p.cadc_noise, nstate,
                          p.order, cbuf, cadc_out + cadc_next * p.n_total)
        cadc_next += 1
    free(vbuf0); free(vbuf1); free(w); free(syn); free(ring); free(ref); free(sa)
    free(sb); free(cbuf); free(dirty); free(nstate); free(bg_next); free(bg_rng)
    free(madc_prev); free(vq); free(spiked); free(sfrac)
    sp_circ_out.swap(sp_circ_local)
    sp_time_out.swap(sp_time_local)
    return 0


def simulate(dict inp, int threads=1):
    """Integrate all trials described by ``inp`` (see :func:`cysim.engine.prepare`).

    Returns ``(spike_trial, spike_local, spike_time_us, cadc, madc)``: spikes with local
    circuit indices, CADC samples (uint8, global circuit order), MADC samples (uint16).
    """
    cdef Params p
    cdef int64_t n_trials = inp["n_trials"]
    cdef int n = inp["n"]
    # keep references to contiguous arrays alive for the whole call
    keep = {}

    def f64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.float64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1)
        keep[name] = a
        return a

    def i64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.int64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.int64)
        keep[name] = a
        return a

    def i32(name):
        a = np.ascontiguousarray(inp[name], dtype=np.int32).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.int32)
        keep[name] = a
        return a

    def u8(name):
        a = np.ascontiguousarray(inp[name], dtype=np.uint8).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.uint8)
        keep[name] = a
        return a

    def u64(name):
        a = np.ascontiguousarray(inp[name], dtype=np.uint64).reshape(-1)
        if a.size == 0:
            a = np.zeros(1, dtype=np.uint64)
        keep[name] = a
        return a

    cdef double[::1] d
    cdef int64_t[::1] li
    cdef int32_t[::1] ii
    cdef uint8_t[::1] bb
    cdef uint64_t[::1] uu

    p.dt = inp["dt"]
    p.n_steps = inp["n_steps"]
    p.n = n
    p.latency = inp["latency"]
    p.rail = inp["rail"]
    p.ring_len = inp["ring_len"]

    d = f64("e_l"); p.c.e_l = &d[0]
    d = f64("p_mem"); p.c.p_mem = &d[0]
    d = f64("p_vexc"); p.c.p_vexc = &d[0]
    d = f64("p_vinh"); p.c.p_vinh = &d[0]
    d = f64("p_vconst"); p.c.p_vconst = &d[0]
    d = f64("i_bias"); p.c.i_bias = &d[0]
    d = f64("p_exc"); p.c.p_exc = &d[0]
    d = f64("p_inh"); p.c.p_inh = &d[0]
    d = f64("v_reset"); p.c.v_reset = &d[0]
    d = f64("v_th"); p.c.v_th = &d[0]
    d = f64("bias_step"); p.c.bias_step = &d[0]
    d = f64("v_th_spike"); p.c.v_th_spike = &d[0]
    d = f64("noise_step"); p.c.sigma = &d[0]
    d = f64("v_t"); p.c.v_t = &d[0]
    d = f64("delta_t"); p.c.delta_t = &d[0]
    d = f64("exp_scale"); p.c.exp_scale = &d[0]
    d = f64("inv_tau_m"); p.c.inv_tau_m = &d[0]
    d = f64("f_exc"); p.c.f_exc = &d[0]
    d = f64("f_inh"); p.c.f_inh = &d[0]
    d = f64("e_rev_e"); p.c.e_rev_e = &d[0]
    d = f64("e_rev_i"); p.c.e_rev_i = &d[0]
    d = f64("p_w"); p.c.p_w = &d[0]
    d = f64("a"); p.c.a = &d[0]
    d = f64("m_exp"); p.c.m_exp = &d[0]
    d = f64("m_adapt"); p.c.m_adapt = &d[0]
    d = f64("m_coba"); p.c.m_coba = &d[0]
    d = f64("b"); p.b = &d[0]
    d = f64("ref_steps"); p.ref_steps = &d[0]
    bb = u8("flags"); p.flags = &bb[0]
    p.n_special = inp["n_special"]
    p.has_noise = 1 if inp["has_noise"] else 0
    li = i64("key_ptr"); p.key_ptr = &li[0]
    ii = i32("key_target"); p.key_target = &ii[0]
    d = f64("key_amp"); p.key_amp = &d[0]
    li = i64("out_ptr"); p.out_ptr = &li[0]
    ii = i32("out_keys"); p.out_keys = &ii[0]
    li = i64("ev_ptr"); p.ev_ptr = &li[0]
    li = i64("ev_step"); p.ev_step = &li[0]
    ii = i32("ev_key"); p.ev_key = &ii[0]
    p.n_bg = inp["n_bg"]
    bb = u8("bg_mode"); p.bg_mode = &bb[0]
    d = f64("bg_period"); p.bg_period = &d[0]
    li = i64("bg_ptr"); p.bg_ptr = &li[0]
    ii = i32("bg_keys"); p.bg_keys = &ii[0]
    uu = u64("bg_seeds"); p.bg_seeds = &uu[0]
    uu = u64("noise_seeds"); p.noise_seeds = &uu[0]
    li = i64("cadc_steps"); p.cadc_steps = &li[0]
    p.n_total = inp["n_total"]
    d = f64("passive_rho"); p.passive_rho = &d[0]
    d = f64("passive_sigma"); p.passive_sigma = &d[0]
    d = f64("cadc_gain"); p.cadc_gain = &d[0]
    d = f64("cadc_offset"); p.cadc_offset = &d[0]
    p.cadc_noise = inp["cadc_noise"]
    d = f64("madc_gain"); p.madc_gain = &d[0]
    d = f64("madc_offset"); p.madc_offset = &d[0]
    p.madc_noise = inp["madc_noise"]
    p.n_cadc = inp["n_cadc"]
    ii = i32("madc_local"); p.madc_local = &ii[0]
    p.n_madc = inp["n_madc"]
    p.n_madc_samples = inp["n_madc_samples"]
    p.madc_period = inp["madc_period"]

    li = i64("order"); p.order = &li[0]
    cadc = np.zeros((n_trials, max(p.n_cadc, 0), p.n_total), dtype=np.uint8)
    madc = np.zeros((n_trials, max(p.n_madc_samples, 0), p.n_madc), dtype=np.uint16)
    cdef uint8_t[::1] cflat = cadc.reshape(-1) if cadc.size else np.zeros(1, dtype=np.uint8)
    cdef uint16_t[::1] mflat = madc.reshape(-1) if madc.size else np.zeros(1, dtype=np.uint16)
    p.cadc_out = &cflat[0]
    p.madc_out = &mflat[0]

    cdef vector[vector[int32_t]] sp_circ
    cdef vector[vector[double]] sp_time
    sp_circ.resize(n_trials)
    sp_time.resize(n_trials)
    cdef int64_t tr
    cdef int failed = 0
    cdef int rc
    if threads < 1:
        threads = 1
    if n_trials < threads:
        threads = <int>max(n_trials, 1)
    with nogil:
        for tr in prange(n_trials, num_threads=threads, schedule="dynamic"):
            rc = _run_trial(&p, tr, &sp_circ[tr], &sp_time[tr])
            if rc != 0:
                failed += 1
    if failed:
        raise MemoryError("the virtual chip could not allocate its state for a trial")

    counts = np.array([sp_circ[tr].size() for tr in range(n_trials)], dtype=np.int64)
    total = int(counts.sum())
    spike_trial = np.repeat(np.arange(n_trials, dtype=np.int32), counts)
    spike_local = np.empty(total, dtype=np.int32)
    spike_time = np.empty(total, dtype=np.float64)
    cdef int32_t[::1] sl = spike_local if total else np.zeros(1, dtype=np.int32)
    cdef double[::1] st = spike_time if total else np.zeros(1)
    cdef int64_t pos = 0
    cdef size_t j
    for tr in range(n_trials):
        for j in range(sp_circ[tr].size()):
            sl[pos] = sp_circ[tr][j]
            st[pos] = sp_time[tr][j]
            pos += 1
    return spike_trial, spike_local, spike_time, cadc, madc
