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

A :class:`Session` keeps the state of every trial between calls, so a run can pause at
the ticks of plasticity kernels and resume (``start``, ``advance(step)``, ``finish``); a
run without pauses (:func:`simulate`) integrates each trial in one go. With plasticity
(``Session(inp, plastic)``) events are queued as routing keys and delivered when they
arrive, through per-trial amplitudes (weights kernels may rewrite), driver short-term
plasticity and correlation sensors (equations in :mod:`cysim.engine`); with it off, the
event path and the arithmetic are the ones of the one-pass run. Sensor readouts are
brought up to date when Python reads them (the keys and circuits that touched sensors are
listed). Compiled plasticity programs (pair-based STDP, :class:`cysim.ppu.STDPProgram`)
tick inside :meth:`Session.advance` without returning to Python, visiting only the
synapses whose sensors crossed their first readout step since their previous tick.

Temporal noise (membrane OU increments, passive OU samples, readout noise) draws from one
xorshift64 stream per circuit and trial: the sum of the four 16-bit fields of one draw,
standardised (an Irwin-Hall variate: exactly zero mean and unit variance, support
+-3.46 sigma, excess kurtosis -0.3). The Poisson background generators use xoshiro256+.
"""

from cython.parallel cimport prange
from libc.math cimport exp, floor, log, llround
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
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
        const double *v_th_coupled;  /* v_th where spiking is on, else +inf (compartments) */
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

    /* Weights written by a plasticity kernel, in one vectorised pass: clip to 0..63 in
       place, count the clipped ones (returned) and flag every block of 64 that holds a
       weight differing from the applied one (int16 counters per block). */
    CYSIM_CLONES static int64_t cysim_scan_weights(int64_t n, int16_t* R w,
                                                   const int16_t* R applied,
                                                   uint8_t* R changed)
    {
        int64_t total = 0;
        for (int64_t b = 0; b < n; b += 64) {
            ptrdiff_t m = n - b < 64 ? n - b : 64;
            int16_t cnt = 0, any = 0;
            int16_t* R wb = w + b;
            const int16_t* R ab = applied + b;
            #pragma omp simd reduction(+:cnt) reduction(|:any)
            for (ptrdiff_t j = 0; j < m; ++j) {
                int16_t x = wb[j];
                cnt += (uint16_t)x > 63;
                x = x < 0 ? 0 : (x > 63 ? 63 : x);
                wb[j] = x;
                any |= x ^ ab[j];
            }
            total += cnt;
            changed[b >> 6] = any != 0;
        }
        return total;
    }

    #define cysim_prefetch(ptr) __builtin_prefetch(ptr)

    /* floor(x), exactly, without a call into libm where the target has no rounding
       instruction (x86-64 before SSE4.1): truncation and a correction below 2^52. */
    static inline double cysim_floor(double x)
    {
        if (x > -4503599627370496.0 && x < 4503599627370496.0) {
            double t = (double)(int64_t)x;
            return t > x ? t - 1.0 : t;
        }
        return floor(x);
    }

    /* exp(x) of a correlation trace, -708 < x < 709 (the engine's traces: -40 < x, a
       little above 0 at most), inlined into the sensor loops instead of a call into libm:
       x = (k / 128) ln 2 + r, |r| <= ln 2 / 256, exp(x) = 2^(k / 128) (1 + p(r)) with
       2^(k mod 128 / 128) from a table (correctly rounded, as hex literals) and p the
       degree-5 Taylor polynomial of exp(r) - 1 (truncation below 1e-18); within 1 ulp of
       exp (tests/unit/cysim/test_plasticity_stdp.py), and the same on every machine (no
       FMA: -ffp-contract=off). */
    static const double cysim_exp2_tab[128] = {
        0x1.0000000000000p+0, 0x1.0163da9fb3335p+0, 0x1.02c9a3e778061p+0, 0x1.04315e86e7f85p+0,
        0x1.059b0d3158574p+0, 0x1.0706b29ddf6dep+0, 0x1.0874518759bc8p+0, 0x1.09e3ecac6f383p+0,
        0x1.0b5586cf9890fp+0, 0x1.0cc922b7247f7p+0, 0x1.0e3ec32d3d1a2p+0, 0x1.0fb66affed31bp+0,
        0x1.11301d0125b51p+0, 0x1.12abdc06c31ccp+0, 0x1.1429aaea92de0p+0, 0x1.15a98c8a58e51p+0,
        0x1.172b83c7d517bp+0, 0x1.18af9388c8deap+0, 0x1.1a35beb6fcb75p+0, 0x1.1bbe084045cd4p+0,
        0x1.1d4873168b9aap+0, 0x1.1ed5022fcd91dp+0, 0x1.2063b88628cd6p+0, 0x1.21f49917ddc96p+0,
        0x1.2387a6e756238p+0, 0x1.251ce4fb2a63fp+0, 0x1.26b4565e27cddp+0, 0x1.284dfe1f56381p+0,
        0x1.29e9df51fdee1p+0, 0x1.2b87fd0dad990p+0, 0x1.2d285a6e4030bp+0, 0x1.2ecafa93e2f56p+0,
        0x1.306fe0a31b715p+0, 0x1.32170fc4cd831p+0, 0x1.33c08b26416ffp+0, 0x1.356c55f929ff1p+0,
        0x1.371a7373aa9cbp+0, 0x1.38cae6d05d866p+0, 0x1.3a7db34e59ff7p+0, 0x1.3c32dc313a8e5p+0,
        0x1.3dea64c123422p+0, 0x1.3fa4504ac801cp+0, 0x1.4160a21f72e2ap+0, 0x1.431f5d950a897p+0,
        0x1.44e086061892dp+0, 0x1.46a41ed1d0057p+0, 0x1.486a2b5c13cd0p+0, 0x1.4a32af0d7d3dep+0,
        0x1.4bfdad5362a27p+0, 0x1.4dcb299fddd0dp+0, 0x1.4f9b2769d2ca7p+0, 0x1.516daa2cf6642p+0,
        0x1.5342b569d4f82p+0, 0x1.551a4ca5d920fp+0, 0x1.56f4736b527dap+0, 0x1.58d12d497c7fdp+0,
        0x1.5ab07dd485429p+0, 0x1.5c9268a5946b7p+0, 0x1.5e76f15ad2148p+0, 0x1.605e1b976dc09p+0,
        0x1.6247eb03a5585p+0, 0x1.6434634ccc320p+0, 0x1.6623882552225p+0, 0x1.68155d44ca973p+0,
        0x1.6a09e667f3bcdp+0, 0x1.6c012750bdabfp+0, 0x1.6dfb23c651a2fp+0, 0x1.6ff7df9519484p+0,
        0x1.71f75e8ec5f74p+0, 0x1.73f9a48a58174p+0, 0x1.75feb564267c9p+0, 0x1.780694fde5d3fp+0,
        0x1.7a11473eb0187p+0, 0x1.7c1ed0130c132p+0, 0x1.7e2f336cf4e62p+0, 0x1.80427543e1a12p+0,
        0x1.82589994cce13p+0, 0x1.8471a4623c7adp+0, 0x1.868d99b4492edp+0, 0x1.88ac7d98a6699p+0,
        0x1.8ace5422aa0dbp+0, 0x1.8cf3216b5448cp+0, 0x1.8f1ae99157736p+0, 0x1.9145b0b91ffc6p+0,
        0x1.93737b0cdc5e5p+0, 0x1.95a44cbc8520fp+0, 0x1.97d829fde4e50p+0, 0x1.9a0f170ca07bap+0,
        0x1.9c49182a3f090p+0, 0x1.9e86319e32323p+0, 0x1.a0c667b5de565p+0, 0x1.a309bec4a2d33p+0,
        0x1.a5503b23e255dp+0, 0x1.a799e1330b358p+0, 0x1.a9e6b5579fdbfp+0, 0x1.ac36bbfd3f37ap+0,
        0x1.ae89f995ad3adp+0, 0x1.b0e07298db666p+0, 0x1.b33a2b84f15fbp+0, 0x1.b59728de5593ap+0,
        0x1.b7f76f2fb5e47p+0, 0x1.ba5b030a1064ap+0, 0x1.bcc1e904bc1d2p+0, 0x1.bf2c25bd71e09p+0,
        0x1.c199bdd85529cp+0, 0x1.c40ab5fffd07ap+0, 0x1.c67f12e57d14bp+0, 0x1.c8f6d9406e7b5p+0,
        0x1.cb720dcef9069p+0, 0x1.cdf0b555dc3fap+0, 0x1.d072d4a07897cp+0, 0x1.d2f87080d89f2p+0,
        0x1.d5818dcfba487p+0, 0x1.d80e316c98398p+0, 0x1.da9e603db3285p+0, 0x1.dd321f301b460p+0,
        0x1.dfc97337b9b5fp+0, 0x1.e264614f5a129p+0, 0x1.e502ee78b3ff6p+0, 0x1.e7a51fbc74c83p+0,
        0x1.ea4afa2a490dap+0, 0x1.ecf482d8e67f1p+0, 0x1.efa1bee615a27p+0, 0x1.f252b376bba97p+0,
        0x1.f50765b6e4540p+0, 0x1.f7bfdad9cbe14p+0, 0x1.fa7c1819e90d8p+0, 0x1.fd3c22b8f71f1p+0
    };

    CYSIM_INLINE double cysim_trace_exp(double x)
    {
        const double shift = 0x1.8p52;  /* z + shift rounds z to an integer k, in its low bits */
        double kd = x * 0x1.71547652b82fep7 + shift;  /* 128 / ln 2 */
        uint64_t kb, sb;
        double r, r2, p, scale;
        int64_t k;
        memcpy(&kb, &kd, sizeof kb);
        k = (int64_t)(kb - UINT64_C(0x4338000000000000));
        kd -= shift;
        r = (x - kd * 0x1.62e42fefa0000p-8) - kd * 0x1.cf79abc9e3b3ap-47;  /* ln 2 / 128, two parts */
        r2 = r * r;
        p = (r + r2 * (0.5 + r * (1.0 / 6.0))) + (r2 * r2) * (1.0 / 24.0 + r * (1.0 / 120.0));
        memcpy(&sb, &cysim_exp2_tab[k & 127], sizeof sb);
        sb += (uint64_t)(k >> 7) << 52;
        memcpy(&scale, &sb, sizeof scale);
        return scale + scale * p;
    }

    /* One weight update of a compiled STDP program (cysim.ppu.STDPProgram's kernel,
       element by element, float64 in its order), written so that the compiler can select
       instead of branch: par = (A+, A-, -, -, -, -, K+ scale, K- scale); kdiv: NULL, or the
       quotients k / par[6] and k / par[7] for k = 0..255 (the same divisions, looked up
       instead of waited for); w_min, w_max: those of the weight dependence; lo, hi: the
       bounds of a new weight; rc/zc and ra/za: the causal and acausal readouts and those
       of the empty sensors; w: the weight; *carry: the fraction of a step carried
       (updated). Returns the new weight: bounded to lo..hi, rounded, held in 0..63
       (*clipped set when that acted); *unsettled is set where a tick with empty sensors
       would still change it (a carry that rounds to a step, or a weight outside the
       bounds). */
    static inline int16_t cysim_stdp_step(const double* par, const double* kdiv, double w_min,
                                          double w_max, double lo, double hi, int mult, int rc,
                                          int zc, int ra, int za, double w, double* carry,
                                          int* clipped, int* unsettled)
    {
        int quiet = (rc == zc) & (ra == za);
        int dp = rc - zc, dm = ra - za;
        double kp, km;
        dp = dp > 0 ? dp : 0;  /* 0..255: readouts are 8-bit */
        dm = dm > 0 ? dm : 0;
        kp = kdiv ? kdiv[dp] : (double)dp / par[6];
        km = kdiv ? kdiv[256 + dm] : (double)dm / par[7];
        double dw = mult ? par[0] * (w_max - w) * kp - par[1] * (w - w_min) * km
                         : par[0] * w_max * kp - par[1] * w_max * km;
        double c = quiet ? *carry : *carry + dw;  /* K+ = K- = 0: +-0 leaves the carry */
        double z = c + 0.5;
        double step = cysim_floor(z);  /* the nearest step */
        double y, b;
        int wi;
        c = c - step;
        *carry = c;
        /* w, step and the bounds (ceil and floor, see cysim.ppu) are whole numbers, so is y:
           rounding it (the kernel's rint) leaves it as it is */
        y = w + step;
        y = y < lo ? lo : y;
        y = y > hi ? hi : y;
        y = y < -32768.0 ? -32768.0 : (y > 32767.0 ? 32767.0 : y);
        wi = (int16_t)y;
        *clipped = (wi < 0) | (wi > 63);
        wi = wi < 0 ? 0 : (wi > 63 ? 63 : wi);
        b = (double)wi;
        b = b < lo ? lo : b;
        b = b > hi ? hi : b;
        z = c + 0.5;  /* floor(z) != 0, compared rather than rounded */
        *unsettled = !((z >= 0.0) & (z < 1.0)) | (b != (double)wi);
        return (int16_t)wi;
    }

    /* Whether a compartment was refractory in the step just taken, from its counter after
       the local step (CYSIM_FINISH): a compartment never crosses there (its v_th_spike is
       +inf), so the counter is r - 1 >= +0.0 if it was refractory (integer r > 0) and
       -h = -0.0 if not: the sign bit tells. */
    #define CYSIM_WAS_REFRACTORY(r) (!signbit(r))

    /* The coupling step of every logical neuron none of whose compartments was refractory
       (counters `ref` after the local step, see above): V <- P V over its
       compartments, P = expm(-L dt) stored column by column (`mt`, P[a][b] = mt[b m + a]);
       each row's sum in the order b = 0..m-1. Neurons of 2 and 4 compartments in
       consecutive local circuits (`contig`) take a vectorised path. Lists in `crossed` the
       neurons in which a compartment reached `v_th` (+inf where spiking is off); returns
       their number. */
    CYSIM_CLONES static int cysim_couple_step(int groups, const int64_t* R ptr,
                                              const int32_t* R idx, const int64_t* R mat_ptr,
                                              const double* R mat, const uint8_t* R contig,
                                              const double* R ref, const double* R v_th,
                                              double* R vnew, int32_t* R crossed)
    {
        double buf[64];
        int n_crossed = 0;
        for (int g = 0; g < groups; ++g) {
            int64_t k0 = ptr[g];
            int m = (int)(ptr[g + 1] - k0);
            if (m == 4 && contig[g]) {
                const double* R r = ref + idx[k0];
                if (CYSIM_WAS_REFRACTORY(r[0]) | CYSIM_WAS_REFRACTORY(r[1]) |
                    CYSIM_WAS_REFRACTORY(r[2]) | CYSIM_WAS_REFRACTORY(r[3]))
                    continue;
            } else {
                int refractory = 0;
                for (int a = 0; a < m; ++a) refractory |= CYSIM_WAS_REFRACTORY(ref[idx[k0 + a]]);
                if (refractory) continue;
            }
            const double* R mt = mat + mat_ptr[g];
            if (m == 4 && contig[g]) {
                double* R x = vnew + idx[k0];
                double x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], out[4];
                const double* R th = v_th + idx[k0];
                int cross = 0;
                for (int a = 0; a < 4; ++a)
                    out[a] = (((0.0 + mt[a] * x0) + mt[4 + a] * x1) + mt[8 + a] * x2) + mt[12 + a] * x3;
                for (int a = 0; a < 4; ++a) {
                    x[a] = out[a];
                    cross |= out[a] >= th[a];
                }
                if (cross) crossed[n_crossed++] = g;
            } else if (m == 2 && contig[g]) {
                double* R x = vnew + idx[k0];
                double x0 = x[0], x1 = x[1], out[2];
                const double* R th = v_th + idx[k0];
                for (int a = 0; a < 2; ++a) out[a] = (0.0 + mt[a] * x0) + mt[2 + a] * x1;
                x[0] = out[0];
                x[1] = out[1];
                if ((out[0] >= th[0]) | (out[1] >= th[1])) crossed[n_crossed++] = g;
            } else {
                int cross = 0;
                for (int b = 0; b < m; ++b) buf[b] = vnew[idx[k0 + b]];
                for (int a = 0; a < m; ++a) {
                    double acc = 0.0;
                    for (int b = 0; b < m; ++b) acc = acc + mt[b * m + a] * buf[b];
                    vnew[idx[k0 + a]] = acc;
                    cross |= acc >= v_th[idx[k0 + a]];
                }
                if (cross) crossed[n_crossed++] = g;
            }
        }
        return n_crossed;
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
        const double* v_th_coupled
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
    int cysim_couple_step(int groups, const int64_t* ptr, const int32_t* idx, const int64_t* mat_ptr,
                          const double* mat, const uint8_t* contig, const double* ref,
                          const double* v_th, double* vnew, int32_t* crossed) noexcept nogil
    void cysim_add_clear(int n, double* dst, double* src) noexcept nogil
    void cysim_prefetch(const void* ptr) noexcept nogil
    double cysim_floor(double x) noexcept nogil
    double cysim_trace_exp(double x) noexcept nogil
    int16_t cysim_stdp_step(const double* par, const double* kdiv, double w_min, double w_max,
                            double lo, double hi, int mult, int rc, int zc, int ra, int za,
                            double w, double* carry, int* clipped, int* unsettled) noexcept nogil
    int64_t cysim_scan_weights(int64_t n, int16_t* w, const int16_t* applied,
                               uint8_t* changed) noexcept nogil
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
    # --- event path with plasticity (see cysim.plasticity) ------------------------------
    # Events are queued as routing keys and delivered when they arrive, with per-trial
    # amplitudes (weights a kernel may rewrite), driver short-term plasticity and
    # correlation sensors. Three orders of the tracked synapses: s (row-major, what
    # kernels see), k (routing entries: the routed ones sorted by key, for events) and
    # j (the routed ones grouped by local circuit, for the sweep at a spike). A synapse's
    # pre trace is the last arrival of its routing key (every event of the key reaches
    # it), kept per key.
    int plastic
    int sensors
    int any_stp
    int64_t n_syn  # tracked synapses (s)
    int64_t n_entries  # routed tracked synapses (k and j)
    const int32_t* entry_syn  # k -> s
    const int32_t* entry_drv  # k -> driver (hemisphere * 128 + driver)
    const int32_t* entry_circ  # k -> local circuit
    const double* eta_a  # k: acausal increment at zero delay [LSB]
    const double* inv_tau_a  # k: 1 / tau [1/us]
    const double* offh_a  # k: readout offset + 0.5 [LSB]
    const int64_t* post_ptr  # local circuit -> its range of j
    const int32_t* post_syn  # j -> s
    const double* eta_c  # j
    const double* inv_tau_c  # j
    const double* offh_c  # j
    const int32_t* syn_entry  # s -> k, or -1 (row off)
    const double* syn_dg  # s: driver gain
    const double* syn_sg  # s: synapse gain
    const int32_t* syn_gidx  # s: index of its gain (channel * n + local circuit), or -1
    const uint8_t* zero_c  # s: readout of an empty sensor
    const uint8_t* zero_a
    double corr_sat
    const int64_t* stp_key_ptr  # key -> drivers with STP on that the event passes
    const int32_t* stp_key_drv
    const double* stp_U
    const double* stp_inv_rec
    const double* stp_inv_fac  # 0 where facilitation is off
    int64_t n_keys
    const int32_t* j_key  # j -> routing key
    const int32_t* k_j  # k -> j of the same synapse
    const double* key_live_us  # key: an arrival this soon after the previous one finds
                               # all its causal entries live (see plastic_tables)
    const int32_t* syn_post  # s -> j, or -1 (row off)
    const uint8_t* zero_cj  # j: readout of an empty causal sensor
    const uint8_t* zero_ak  # k: readout of an empty acausal sensor
    const uint8_t* zero_aj  # j: ... acausal sensor of the same synapse
    const uint8_t* zero_ck  # k: ... causal sensor of the same synapse
    # Sensors touched since a consumer last looked: per consumer the routing keys that
    # arrived (acausal sensors of their entries) and the circuits that spiked (causal
    # sensors of their synapses), each listed once. Consumer 0 refreshes the 8-bit
    # readouts that kernels read; consumer 1 + g is compiled program g.
    int n_cons
    const int64_t* kc_ptr  # key -> its consumers
    const int32_t* kc_cons
    const int64_t* cc_ptr  # local circuit -> its consumers
    const int32_t* cc_cons
    # --- compiled pair-based STDP programs (cysim.ppu.STDPProgram) ------------------------
    # Program g owns positions q in [nat_off[g], nat_off[g + 1]), one per synapse it
    # updates; programs own disjoint synapses.
    int n_native
    const int64_t* nat_off
    const int32_t* nat_mult  # 1: multiplicative weight dependence, 0: additive
    const uint8_t* nat_reset  # 1: a tick empties the program's sensors
    const int32_t* q_syn  # q -> s
    # Parameter rows of 8: A_plus, A_minus, w_min, w_max [steps], the bounds of a new
    # weight ceil(w_min - 1e-9) and floor(w_max + 1e-9), eta_causal, eta_acausal [sensor
    # LSB per pair at zero delay] (K = readout / eta). Program g's row of position q is
    # nat_par[g] + (q - nat_off[g]), or nat_par[g] for all where nat_uniform[g], or
    # nat_par[g] + NatState.row where nat_in_state[g].
    const int64_t* nat_par
    const uint8_t* nat_uniform
    const double* q_par
    # 1: the program's positions keep w_min, w_max, the bounds of a new weight and the row
    # of the rest (one of few distinct ones) in their NatState
    const uint8_t* nat_in_state
    # per row of q_par, where there are few rows: k / eta_causal, then k / eta_acausal for
    # k = 0..255 (512 doubles); NULL otherwise
    const double* q_kdiv
    const int32_t* j_q  # j -> q, or -1 (no program owns the synapse)
    const int32_t* k_q  # k -> q, or -1
    const EntryInfo* jinfo  # j
    const EntryInfo* kinfo  # k
    # smallest accumulated value that reads more than empty, per j (causal) and k; inf
    # where no compiled program owns the synapse
    const float* thr_c
    const float* thr_a
    int64_t found_cap  # longest list of sensors that crossed (see Trial.found)
    # ticks of compiled programs that run inside the engine, in execution order
    int64_t n_ntk
    const int64_t* ntk_step
    const int32_t* ntk_prog
    # --- logical (multi-compartment) neurons: groups of joined circuits -------------------
    int cpl_groups
    const int64_t* cpl_ptr  # group -> its range of cpl_idx
    const int32_t* cpl_idx  # local circuit of each compartment, left to right
    const int64_t* cpl_mat_ptr  # group -> its row-major coupling propagator in cpl_mat
    const double* cpl_mat  # column by column (see cysim.engine.coupling_inputs)
    const uint8_t* cpl_contig  # group -> its compartments are consecutive local circuits


cdef struct Rng:  # xoshiro256+ (Poisson background generators)
    uint64_t s0
    uint64_t s1
    uint64_t s2
    uint64_t s3


cdef struct NatItem:  # a synapse a compiled program updates at a tick
    int32_t q
    int32_t s
    uint8_t rc  # its readouts
    uint8_t ra
    uint8_t zc  # the readouts of its empty sensors
    uint8_t za


cdef struct NatState:  # per position q of the compiled programs, per trial (32 bytes)
    double carry  # fraction of a weight step carried to the next tick
    uint32_t mark  # tick stamp: listed at that tick ...
    int32_t slot  # ... as this item
    # where the program keeps its parameters here (Params.nat_in_state): w_min and w_max of
    # the weight dependence and the bounds of a new weight
    float w_min
    float w_max
    int16_t w  # the synapse's weight (kept equal to Trial.weights between full ticks)
    int16_t lo
    int16_t hi
    int16_t row  # the program's parameter row of the rest


cdef struct EntryInfo:  # per j or k entry: what a tick of a compiled program needs (24 bytes)
    double offh  # readout offset + 0.5 [LSB]
    int32_t q  # position, or -1 (no compiled program owns the synapse)
    int32_t s  # synapse
    uint8_t zero  # readout of this empty sensor
    uint8_t zero_other  # readout of the synapse's other sensor when empty


cdef struct Trial:
    # position in the run
    int64_t index
    int64_t step  # next step to integrate
    int slot  # ring-buffer slot of that step: step % ring_len
    int64_t ev
    int64_t ev_end
    int64_t cadc_next
    int64_t madc_next
    int any_bg
    # state
    double* v
    double* vnew
    double* vbuf0
    double* vbuf1
    double* w
    double* syn  # [exc..., inh...]
    double* ring
    double* ref
    double* sa
    double* sb
    int32_t* cbuf
    uint8_t* dirty
    uint64_t* nstate
    double* bg_next
    Rng* bg_rng
    double* madc_prev
    double* vq
    int32_t* spiked
    double* sfrac
    int32_t* gcross  # logical neurons in which a compartment crossed its threshold (scratch)
    vector[int32_t]* sp_circ
    vector[double]* sp_time
    # parameters: the shared ones unless a kernel rewrote this trial's CapMem cells
    cysim_circuits c
    const double* b
    const double* ref_steps
    const double* passive_rho
    const double* passive_sigma
    # plasticity (rows of the session's arrays)
    vector[int32_t]* queues  # ring_len queues of keys arriving in each slot
    int16_t* weights  # s: written by kernels
    int16_t* applied  # s: weights in effect
    uint8_t* changed  # per block of 64 synapses: a written weight differs (scratch)
    uint8_t* read_c  # s: 8-bit sensor readouts, brought up to date by _refresh_readouts
    uint8_t* read_a
    double* amp  # k
    float* acc_a  # k
    double* key_last  # per routing key: time of its last arrival (the pre traces)
    # Live causal entries: per local circuit i, the j entries whose pre trace may still
    # count at its next spike (their key arrived since they were last seen older than the
    # cutoff), at live_j[post_ptr[i] : post_ptr[i] + live_n[i]]; live_f[j] says whether
    # j is listed. A spike sweeps only these instead of all synapses of the circuit.
    int32_t* live_j
    int32_t* live_n
    uint8_t* live_f
    float* acc_c  # j
    double* gain  # [exc..., inh...] synaptic gain per local circuit
    double* last_post
    uint8_t* counts
    double* stp_x
    double* stp_u
    double* stp_last
    double* stp_f
    # touched sensors per consumer (see Params.n_cons)
    uint8_t* dflag_k  # n_cons x n_keys: listed
    uint8_t* dflag_c  # n_cons x max(n, 1)
    vector[int32_t]* dlist_k  # n_cons lists
    vector[int32_t]* dlist_c
    # compiled programs
    NatState* nat  # q
    uint8_t* nat_stale  # per program: readouts were refreshed since its previous tick
    uint32_t stamp
    vector[int32_t]* keep  # per program: positions to process at its next tick anyway
    # entries (j or k, << 1 | causal) that began to read more than empty since the previous
    # tick of their program: found_buf[:found_n] (room for Params.found_cap + 1)
    int32_t* found_buf
    int64_t found_n
    vector[NatItem]* cur  # positions processed at this tick (scratch)
    uint8_t* nat_full  # per program: process every position at its next tick
    int64_t ntk_next  # next engine tick of the compiled programs
    int64_t ntk_end  # engine ticks before this one may run in the current advance
    int64_t* ntk_clipped  # per engine tick: weights clipped to 0..63


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


cdef inline uint8_t _readout(double x) noexcept nogil:
    """8-bit sensor readout of ``x`` = accumulated value + offset + 0.5."""
    return <uint8_t>(0.0 if x < 0.0 else (255.0 if x > 255.0 else x))


cdef inline void _deliver_plastic(const Params* p, Trial* st, double* dst, int32_t key,
                                  double t) noexcept nogil:
    """An event with routing key ``key`` arrives at its synapses at time ``t``: driver
    short-term plasticity, synaptic input into ``dst``, acausal sensors, pre traces."""
    cdef int64_t k
    cdef int32_t d, j, c
    cdef double h, x, u, a, arg
    cdef float old
    # the key's causal entries were all live unless its previous arrival is long ago
    cdef int relist = p.sensors and not (t - st.key_last[key] < p.key_live_us[key])
    if p.any_stp:  # every driver the event passes updates its state once
        for k in range(p.stp_key_ptr[key], p.stp_key_ptr[key + 1]):
            d = p.stp_key_drv[k]
            h = t - st.stp_last[d]  # +inf before the first event: fully recovered
            x = st.stp_x[d]
            u = st.stp_u[d]
            x = 1.0 + (x - x * u - 1.0) * exp(-h * p.stp_inv_rec[d])
            if p.stp_inv_fac[d] > 0.0:
                u = p.stp_U[d] + u * (1.0 - p.stp_U[d]) * exp(-h * p.stp_inv_fac[d])
            else:
                u = p.stp_U[d]
            st.stp_x[d] = x
            st.stp_u[d] = u
            st.stp_last[d] = t
            st.stp_f[d] = x * u
    cdef const double* amp = st.amp
    cdef const int32_t* target = p.key_target
    cdef const int32_t* circ = p.entry_circ
    cdef const double* last_post = st.last_post
    cdef const double* inv_tau = p.inv_tau_a
    cdef const double* eta = p.eta_a
    cdef const float* thr = p.thr_a
    cdef float* acc = st.acc_a
    cdef double sat = p.corr_sat
    cdef int any_stp = p.any_stp
    cdef int sensors = p.sensors
    cdef int native = p.n_native
    cdef float now
    cdef int32_t* fbuf = st.found_buf
    cdef int64_t fn = st.found_n
    for k in range(p.key_ptr[key], p.key_ptr[key + 1]):
        a = amp[k]
        if any_stp:
            a = a * st.stp_f[p.entry_drv[k]]
        dst[target[k]] += a
        if sensors:
            if relist:
                j = p.k_j[k]
                if not st.live_f[j]:  # its pre trace counts again at the circuit's spikes
                    st.live_f[j] = 1
                    c = circ[k]
                    st.live_j[p.post_ptr[c] + st.live_n[c]] = j
                    st.live_n[c] += 1
            # post trace of the target circuit; traces older than 40 tau (< 1e-15 LSB) skipped
            arg = (last_post[circ[k]] - t) * inv_tau[k]
            if arg > -40.0:
                old = acc[k]
                x = old + eta[k] * cysim_trace_exp(arg)
                now = <float>(x if x < sat else sat)
                acc[k] = now
                if native:
                    fn = _crossing(p, st, fbuf, fn, <int32_t>(k << 1), old, now, thr[k])
    st.found_n = fn
    if p.sensors:
        st.key_last[key] = t
        _touch(p.kc_ptr, p.kc_cons, key, st.dflag_k, p.n_keys, st.dlist_k)


cdef inline void _touch(const int64_t* ptr, const int32_t* cons, int32_t x, uint8_t* flags,
                        int64_t stride, vector[int32_t]* lists) noexcept nogil:
    """List key or circuit ``x`` with each of its consumers that has not listed it yet
    (bit 30 of a consumer entry, passed on with ``x``: all its entries are the consumer's)."""
    cdef int64_t c
    cdef int32_t g, entry
    for c in range(ptr[x], ptr[x + 1]):
        entry = cons[c]
        g = entry & 0xFFFF
        if not flags[g * stride + x]:
            flags[g * stride + x] = 1
            lists[g].push_back(x | (entry & 0x40000000))


cdef inline int64_t _crossing(const Params* p, Trial* st, int32_t* found, int64_t n,
                              int32_t entry, float old, float now, float thr) noexcept nogil:
    """A sensor (``entry``: j or k << 1 | causal) went from ``old`` to ``now``: listed for the
    compiled programs' next tick where that crossed its first readout step ``thr``; returns
    the new length ``n`` of the list ``found``. The entry is written in any case and kept
    where it crossed: no branch on the crossing, which is as likely as not."""
    cdef int g
    found[n] = entry
    n += (now >= thr) & (old < thr)
    if n >= p.found_cap:  # programs that rarely tick: their next ticks scan every sensor
        for g in range(p.n_native):
            st.nat_full[g] = 2
        n = 0
    return n


cdef inline void _post_spike(const Params* p, Trial* st, int i, double ts) noexcept nogil:
    """Circuit ``i`` spiked at ``ts``: causal sensors of its synapses, its post trace.

    Pre traces older than 40 tau (< 1e-15 LSB) are skipped. Only the circuit's live
    entries are visited: an entry whose trace is that old is dropped from them (its key's
    next arrival lists it again), so every other synapse of the circuit is one whose
    trace would have been skipped. An entry that a compiled program owns stays while its
    sensor holds a value, so that the program's tick finds every sensor it has to empty
    among the live entries (:func:`_empty`)."""
    cdef int32_t j
    cdef double arg, x
    cdef float old
    cdef const double* key_last = st.key_last
    cdef int32_t* live = st.live_j + p.post_ptr[i]
    cdef int32_t m = st.live_n[i]
    cdef int32_t a = 0
    cdef float now
    cdef int32_t* fbuf = st.found_buf
    cdef int64_t fn = st.found_n
    while a < m:
        j = live[a]
        arg = (key_last[p.j_key[j]] - ts) * p.inv_tau_c[j]
        if arg > -40.0:
            old = st.acc_c[j]
            x = old + p.eta_c[j] * cysim_trace_exp(arg)
            now = <float>(x if x < p.corr_sat else p.corr_sat)
            st.acc_c[j] = now
            if p.n_native:
                fn = _crossing(p, st, fbuf, fn, (j << 1) | 1, old, now, p.thr_c[j])
            a += 1
        elif st.acc_c[j] != 0.0 and p.j_q[j] >= 0:
            a += 1
        else:
            st.live_f[j] = 0
            m -= 1
            live[a] = live[m]
    st.live_n[i] = m
    st.found_n = fn
    st.last_post[i] = ts
    _touch(p.cc_ptr, p.cc_cons, i, st.dflag_c, p.n if p.n > 0 else 1, st.dlist_c)


cdef void _refresh_readouts(const Params* p, Trial* st) noexcept nogil:
    """Bring the 8-bit readouts of the sensors touched since the last refresh up to date."""
    cdef vector[int32_t]* lk = &st.dlist_k[0]
    cdef vector[int32_t]* lc = &st.dlist_c[0]
    cdef size_t a
    cdef int32_t x
    cdef int64_t k, j
    cdef int g
    if lk[0].size() or lc[0].size():
        for g in range(p.n_native):
            st.nat_stale[g] = 1
    for a in range(lk[0].size()):
        x = lk[0][a] & 0x3FFFFFFF
        st.dflag_k[x] = 0
        for k in range(p.key_ptr[x], p.key_ptr[x + 1]):
            st.read_a[p.entry_syn[k]] = _readout(st.acc_a[k] + p.offh_a[k])
    lk[0].clear()
    for a in range(lc[0].size()):
        x = lc[0][a] & 0x3FFFFFFF
        st.dflag_c[x] = 0
        for j in range(p.post_ptr[x], p.post_ptr[x + 1]):
            st.read_c[p.post_syn[j]] = _readout(st.acc_c[j] + p.offh_c[j])
    lc[0].clear()


cdef inline uint8_t _read_causal(const Params* p, const Trial* st, int32_t s) noexcept nogil:
    cdef int64_t j = p.syn_post[s]
    return p.zero_c[s] if j < 0 else _readout(st.acc_c[j] + p.offh_c[j])


cdef inline uint8_t _read_acausal(const Params* p, const Trial* st, int32_t s) noexcept nogil:
    cdef int64_t k = p.syn_entry[s]
    return p.zero_a[s] if k < 0 else _readout(st.acc_a[k] + p.offh_a[k])


cdef inline void _write_weight(const Params* p, Trial* st, NatState* ns, int32_t s, int16_t wi) noexcept nogil:
    """Weight ``wi`` of synapse ``s`` in effect from now on (amplitude of its entry included)."""
    cdef int64_t k
    if wi != ns.w:
        ns.w = wi
        st.weights[s] = wi
        st.applied[s] = wi
        k = p.syn_entry[s]
        if k >= 0:
            st.amp[k] = ((<double>wi * p.syn_dg[s]) * p.syn_sg[s]) * st.gain[p.syn_gidx[s]]


cdef inline int _update(const Params* p, Trial* st, int g, const NatItem* it,
                        int write_readouts) noexcept nogil:
    """The weight update of one synapse of compiled program ``g``; returns 1 if the new
    weight was clipped to 0..63."""
    cdef int64_t q = it.q
    cdef NatState* ns = &st.nat[q]
    cdef const double* par = p.q_par + 8 * (
        p.nat_par[g] + (ns.row if p.nat_in_state[g] else (0 if p.nat_uniform[g] else q - p.nat_off[g]))
    )
    cdef int clipped, unsettled
    cdef int quiet = it.rc == it.zc and it.ra == it.za
    cdef int16_t wi
    cdef const double* kdiv = NULL
    if p.q_kdiv != NULL:
        kdiv = p.q_kdiv + 512 * ((par - p.q_par) // 8)
    if p.nat_in_state[g]:
        wi = cysim_stdp_step(par, kdiv, <double>ns.w_min, <double>ns.w_max, <double>ns.lo,
                             <double>ns.hi, p.nat_mult[g], it.rc, it.zc, it.ra, it.za,
                             <double>ns.w, &ns.carry, &clipped, &unsettled)
    else:
        wi = cysim_stdp_step(par, kdiv, par[2], par[3], par[4], par[5], p.nat_mult[g], it.rc,
                             it.zc, it.ra, it.za, <double>ns.w, &ns.carry, &clipped, &unsettled)
    _write_weight(p, st, ns, it.s, wi)  # (the weight in effect equals the written one before a tick)
    if p.nat_reset[g]:
        if write_readouts and not quiet:
            st.read_c[it.s] = it.zc
            st.read_a[it.s] = it.za
    elif not quiet:
        unsettled = 1  # its sensors keep their values: the next tick reads them again
    if unsettled:
        st.keep[g].push_back(<int32_t>q)
    return clipped


cdef int64_t _settle(const Params* p, Trial* st, int g) noexcept nogil:
    """The positions of program ``g`` not listed at this tick: empty sensors (K = 0), so
    only the carry and the bounds act (the update of :func:`_update` with empty readouts);
    returns the number of weights clipped to 0..63."""
    cdef int64_t q0 = p.nat_off[g]
    cdef int64_t q1 = p.nat_off[g + 1]
    cdef int uniform = p.nat_uniform[g]
    cdef int in_state = p.nat_in_state[g]
    cdef const double* par = p.q_par + 8 * p.nat_par[g]
    cdef int64_t q
    cdef NatState* ns
    cdef double w, w_min, w_max, lo, hi
    cdef int16_t wi
    cdef int one, unsettled
    cdef int64_t clipped = 0
    cdef uint32_t stamp = st.stamp
    for q in range(q0, q1):
        ns = &st.nat[q]
        if ns.mark == stamp:
            continue
        if in_state:
            par = p.q_par + 8 * (p.nat_par[g] + ns.row)
            w_min, w_max, lo, hi = ns.w_min, ns.w_max, ns.lo, ns.hi
        else:
            if not uniform:
                par = p.q_par + 8 * (p.nat_par[g] + q - q0)
            w_min, w_max, lo, hi = par[2], par[3], par[4], par[5]
        w = <double>ns.w
        if cysim_floor(ns.carry + 0.5) == 0.0 and lo <= w <= hi:
            continue  # nothing changes (carry - 0 is the carry)
        wi = cysim_stdp_step(par, NULL, w_min, w_max, lo, hi, p.nat_mult[g], 0, 0, 0, 0, w,
                             &ns.carry, &one, &unsettled)
        clipped += one
        _write_weight(p, st, ns, p.q_syn[q], wi)
        if unsettled:
            st.keep[g].push_back(<int32_t>q)
    return clipped


cdef inline void _list(const Params* p, Trial* st, int64_t e, int causal) noexcept nogil:
    """Entry ``e`` of the j (``causal``) or k order reads more than empty (or did when it
    was found): list its synapse for this tick with its readouts.

    The other sensor of a newly listed synapse reads empty unless it is listed itself (or
    the previous tick kept the synapse: then both were read): reading more than empty
    now, it was emptied at the previous tick (or, without reset, read empty then, else the
    synapse would have been kept) and has since crossed, so it was found as well."""
    cdef vector[NatItem]* cur = st.cur
    cdef const EntryInfo* info = (p.jinfo if causal else p.kinfo) + e
    cdef uint8_t r = _readout((st.acc_c[e] if causal else st.acc_a[e]) + info.offh)
    cdef NatState* ns
    cdef NatItem item
    if r <= info.zero:  # emptied from Python since
        return
    ns = &st.nat[info.q]
    if ns.mark != st.stamp:
        ns.mark = st.stamp
        ns.slot = <int32_t>cur[0].size()
        item.q = info.q
        item.s = info.s
        if causal:
            item.rc = r
            item.zc = info.zero
            item.ra = info.zero_other
            item.za = info.zero_other
        else:
            item.ra = r
            item.za = info.zero
            item.rc = info.zero_other
            item.zc = info.zero_other
        cur[0].push_back(item)
    elif causal:
        cur[0][ns.slot].rc = r
    else:
        cur[0][ns.slot].ra = r


cdef inline void _empty(const Params* p, Trial* st, int64_t q0, int64_t q1, int32_t x,
                        int causal) noexcept nogil:
    """Empty the sensors of the synapses of positions ``q0:q1`` among the entries of the
    circuit (``causal``) or key in list entry ``x``. A circuit's sensors that hold a value
    and belong to a compiled program are all among its live entries (:func:`_post_spike`):
    only those are visited."""
    cdef int32_t y = x & 0x3FFFFFFF
    cdef const int32_t* live
    cdef int32_t a, m
    cdef int64_t e0 = p.post_ptr[y] if causal else p.key_ptr[y]
    cdef int64_t e1 = p.post_ptr[y + 1] if causal else p.key_ptr[y + 1]
    cdef float* acc = st.acc_c if causal else st.acc_a
    cdef const int32_t* owner = p.j_q if causal else p.k_q
    cdef int64_t e, q
    if causal:
        live = st.live_j + e0
        m = st.live_n[y]
        if x & 0x40000000:  # all of them are the program's
            for a in range(m):
                acc[live[a]] = 0.0
        else:
            for a in range(m):
                q = owner[live[a]]
                if q0 <= q < q1:
                    acc[live[a]] = 0.0
        return
    if x & 0x40000000:  # all of them are the program's
        memset(acc + e0, 0, (e1 - e0) * sizeof(float))
        return
    for e in range(e0, e1):
        q = owner[e]
        if q0 <= q < q1:
            acc[e] = 0.0


cdef inline int _mine(const Params* p, int32_t entry, int64_t q0, int64_t q1) noexcept nogil:
    """Whether found-list ``entry`` belongs to the program of positions ``q0:q1``."""
    cdef int64_t q = (p.jinfo if entry & 1 else p.kinfo)[entry >> 1].q
    return q0 <= q < q1


cdef int64_t _native_tick(const Params* p, Trial* st, int g) noexcept nogil:
    """A tick of compiled STDP program ``g`` in one trial; returns the number of weights
    clipped to 0..63.

    The arithmetic of the program's Python kernel, element by element, for every synapse
    it owns; but only the synapses whose sensors began to read more than empty since its
    previous tick (the engine lists them when an event or a spike raises a sensor past
    its first step), and those the previous tick left unsettled, are visited: any other
    one reads empty sensors, and its weight and carry stay as they are. The sensors that
    events and spikes touched are emptied. The first tick, and the first after weights
    were written from Python, visit all synapses.
    """
    cdef int64_t q0 = p.nat_off[g]
    cdef int64_t q1 = p.nat_off[g + 1]
    cdef int reset = p.nat_reset[g]
    cdef int cons = g + 1
    cdef int nn = p.n if p.n > 0 else 1
    cdef vector[int32_t]* lk = &st.dlist_k[cons]
    cdef vector[int32_t]* lc = &st.dlist_c[cons]
    cdef vector[int32_t]* keep = &st.keep[g]
    cdef int32_t* found = st.found_buf
    cdef vector[NatItem]* cur = st.cur
    cdef uint8_t* fk = st.dflag_k + cons * p.n_keys
    cdef uint8_t* fc = st.dflag_c + cons * nn
    cdef size_t a, n_found, kept
    cdef int32_t x, s, entry
    cdef int64_t q, e
    cdef int64_t clipped = 0
    cdef int full = st.nat_full[g]
    cdef int write_readouts = full or st.nat_stale[g]
    cdef int only = p.n_native == 1
    cdef const EntryInfo* info
    cdef NatItem item
    cdef NatState* ns
    st.stamp += 1
    cur[0].clear()
    if full:  # weights may have been written from Python: take them over
        for q in range(q0, q1):
            st.nat[q].w = st.weights[p.q_syn[q]]
    if full == 2:  # sensors that crossed were not all listed: scan all
        keep[0].clear()
        for e in range(p.n_entries):
            q = p.j_q[e]
            if q0 <= q < q1:
                _list(p, st, e, 1)
            q = p.k_q[e]
            if q0 <= q < q1:
                _list(p, st, e, 0)
    else:
        # positions left unsettled by the previous tick
        for a in range(keep[0].size()):
            q = keep[0][a]
            s = p.q_syn[q]
            ns = &st.nat[q]
            ns.mark = st.stamp
            ns.slot = <int32_t>cur[0].size()
            item.q = <int32_t>q
            item.s = s
            item.rc = _read_causal(p, st, s)
            item.ra = _read_acausal(p, st, s)
            item.zc = p.zero_c[s]
            item.za = p.zero_a[s]
            cur[0].push_back(item)
    keep[0].clear()
    # sensors that began to read more than empty (those of other programs stay listed)
    n_found = <size_t>st.found_n
    kept = 0
    if full != 2:  # the entries lie scattered: ask for all of them at once
        for a in range(n_found):
            entry = found[a]
            cysim_prefetch((p.jinfo if entry & 1 else p.kinfo) + (entry >> 1))
        for a in range(n_found):
            entry = found[a]
            info = (p.jinfo if entry & 1 else p.kinfo) + (entry >> 1)
            cysim_prefetch(&st.nat[info.q])
            if only and not p.nat_uniform[0] and not p.nat_in_state[0]:
                cysim_prefetch(p.q_par + 8 * (p.nat_par[0] + info.q - q0))
            cysim_prefetch((st.acc_c if entry & 1 else st.acc_a) + (entry >> 1))
    for a in range(n_found):
        entry = found[a]
        if only or _mine(p, entry, q0, q1):
            if full != 2:
                _list(p, st, entry >> 1, entry & 1)
        else:
            found[kept] = entry
            kept += 1
    st.found_n = <int64_t>kept
    # empty the sensors that circuits (spikes) and keys (events) touched
    for a in range(lc[0].size()):
        x = lc[0][a]
        fc[x & 0x3FFFFFFF] = 0
        if reset and full != 2:
            _empty(p, st, q0, q1, x, 1)
    lc[0].clear()
    for a in range(lk[0].size()):
        x = lk[0][a]
        fk[x & 0x3FFFFFFF] = 0
        if reset and full != 2:
            _empty(p, st, q0, q1, x, 0)
    lk[0].clear()
    if full == 2 and reset:
        for e in range(p.n_entries):
            q = p.j_q[e]
            if q0 <= q < q1:
                st.acc_c[e] = 0.0
            q = p.k_q[e]
            if q0 <= q < q1:
                st.acc_a[e] = 0.0
    for a in range(cur[0].size()):
        clipped += _update(p, st, g, &cur[0][a], write_readouts)
    if full:  # every other position reads empty sensors
        clipped += _settle(p, st, g)
        st.nat_full[g] = 0
    st.nat_stale[g] = 0
    return clipped


cdef void _native_ticks(const Params* p, Trial* st, int64_t step) noexcept nogil:
    """Run the engine ticks of compiled programs due at or before ``step``."""
    cdef int64_t nt = st.ntk_next
    while nt < st.ntk_end and p.ntk_step[nt] <= step:
        st.ntk_clipped[nt] = _native_tick(p, st, p.ntk_prog[nt])
        nt += 1
    st.ntk_next = nt


cdef void _free_trial(Trial* st) noexcept nogil:
    free(st.vbuf0); free(st.vbuf1); free(st.w); free(st.syn); free(st.ring); free(st.ref)
    free(st.sa); free(st.sb); free(st.cbuf); free(st.dirty); free(st.nstate); free(st.bg_next)
    free(st.bg_rng); free(st.madc_prev); free(st.vq); free(st.spiked); free(st.sfrac)
    free(st.gcross); st.gcross = NULL
    st.vbuf0 = NULL; st.vbuf1 = NULL; st.w = NULL; st.syn = NULL; st.ring = NULL
    st.ref = NULL; st.sa = NULL; st.sb = NULL; st.cbuf = NULL; st.dirty = NULL
    st.nstate = NULL; st.bg_next = NULL; st.bg_rng = NULL; st.madc_prev = NULL; st.vq = NULL
    st.spiked = NULL; st.sfrac = NULL


cdef int _init_trial(const Params* p, Trial* st) noexcept nogil:
    """Allocate the state of trial ``st.index`` and set it to the start of the run."""
    cdef int n = p.n
    cdef int L = p.ring_len
    cdef int nn = n if n > 0 else 1
    cdef int64_t trial = st.index
    cdef int i, j, g
    cdef uint64_t x
    st.vbuf0 = <double*>malloc(nn * sizeof(double))
    st.vbuf1 = <double*>malloc(nn * sizeof(double))
    st.w = <double*>calloc(nn, sizeof(double))
    st.syn = <double*>calloc(2 * nn, sizeof(double))
    st.ring = <double*>calloc(<int64_t>L * 2 * nn, sizeof(double))
    st.ref = <double*>calloc(nn, sizeof(double))
    st.sa = <double*>malloc(nn * sizeof(double))
    st.sb = <double*>malloc(nn * sizeof(double))
    st.cbuf = <int32_t*>malloc(p.n_total * sizeof(int32_t))
    st.dirty = <uint8_t*>calloc(L, sizeof(uint8_t))
    st.nstate = <uint64_t*>malloc(p.n_total * sizeof(uint64_t))
    st.bg_next = <double*>malloc((p.n_bg + 1) * sizeof(double))
    st.bg_rng = <Rng*>malloc((p.n_bg + 1) * sizeof(Rng))
    st.madc_prev = <double*>malloc((p.n_madc + 1) * sizeof(double))
    st.vq = <double*>malloc((p.n_total - n + 1) * sizeof(double))
    st.spiked = <int32_t*>malloc(nn * sizeof(int32_t))
    st.sfrac = <double*>malloc(nn * sizeof(double))
    st.gcross = <int32_t*>calloc(p.cpl_groups + 1, sizeof(int32_t))
    if st.gcross == NULL:
        _free_trial(st)
        return -1
    if st.vbuf0 == NULL or st.vbuf1 == NULL or st.w == NULL or st.syn == NULL \
            or st.ring == NULL or st.ref == NULL or st.sa == NULL or st.sb == NULL \
            or st.cbuf == NULL or st.dirty == NULL or st.nstate == NULL or st.bg_next == NULL \
            or st.bg_rng == NULL or st.madc_prev == NULL or st.vq == NULL \
            or st.spiked == NULL or st.sfrac == NULL:
        _free_trial(st)
        return -1
    st.v = st.vbuf0
    st.vnew = st.vbuf1
    st.step = 0
    st.slot = 0
    st.ev = p.ev_ptr[trial]
    st.ev_end = p.ev_ptr[trial + 1]
    st.cadc_next = 0
    st.madc_next = 0
    st.any_bg = 0
    x = p.noise_seeds[trial] ^ <uint64_t>0x5DEECE66D
    for i in range(n):
        st.v[i] = st.c.e_l[i]
    for j in range(p.n_total):
        st.nstate[j] = _splitmix(&x) | 1u  # xorshift64 needs a non-zero state
    for j in range(n, p.n_total):
        st.vq[j - n] = st.c.e_l[j]
    for g in range(p.n_bg):
        _seed(&st.bg_rng[g], p.bg_seeds[trial * p.n_bg + g])
        if p.bg_mode[g] != 0:
            st.any_bg = 1
        if p.bg_mode[g] == 1:
            st.bg_next[g] = -log(_uniform(&st.bg_rng[g])) * p.bg_period[g]
        else:
            st.bg_next[g] = p.bg_period[g]
    return 0


cdef int _couple(const Params* p, const cysim_circuits* c, const double* ref_steps,
                 int32_t* gcross, double* vnew, double* ref) noexcept nogil:
    """After the local step of every circuit: the exact coupling step of each logical
    neuron that is not refractory (``vnew <- expm(-L dt) vnew`` over its compartments),
    then the thresholds of its compartments with spiking on. A crossing marks that
    compartment as spiking (counter -1, reset by the caller) and resets every other
    compartment of the neuron to its reset potential for the spiking one's refractory
    time. Returns whether any compartment fired."""
    cdef int g, a, m, first, q, n_crossed
    cdef int64_t k0
    cdef int32_t i
    cdef int hits = 0
    cdef double rsteps
    n_crossed = cysim_couple_step(p.cpl_groups, p.cpl_ptr, p.cpl_idx, p.cpl_mat_ptr, p.cpl_mat,
                                  p.cpl_contig, ref, c.v_th_coupled, vnew, gcross)
    for q in range(n_crossed):
        g = gcross[q]
        k0 = p.cpl_ptr[g]
        m = <int>(p.cpl_ptr[g + 1] - k0)
        first = -1
        for a in range(m):
            i = p.cpl_idx[k0 + a]
            if (p.flags[i] & 1) and vnew[i] >= c.v_th[i]:
                ref[i] = -1.0
                if first < 0:
                    first = a
        if first >= 0:
            hits = 1
            rsteps = ref_steps[p.cpl_idx[k0 + first]]
            for a in range(m):
                i = p.cpl_idx[k0 + a]
                if ref[i] >= 0.0:
                    vnew[i] = c.v_reset[i]
                    ref[i] = rsteps
    return hits


cdef void _advance(const Params* p, Trial* st, int64_t step_end) noexcept nogil:
    """Integrate trial ``st`` from its current step up to (excluding) ``step_end``."""
    # spikes are collected locally and handed back at the end: vectors of neighbouring
    # trials share cache lines, and other threads write them
    cdef vector[int32_t] sp_circ_local
    cdef vector[double] sp_time_local
    sp_circ_local.swap(st.sp_circ[0])
    sp_time_local.swap(st.sp_time[0])
    cdef vector[int32_t]* sp_circ = &sp_circ_local
    cdef vector[double]* sp_time = &sp_time_local
    cdef const cysim_circuits* c = &st.c
    cdef const double* b = st.b
    cdef const double* ref_steps = st.ref_steps
    cdef const double* prho = st.passive_rho
    cdef const double* psig = st.passive_sigma
    cdef int n = p.n
    cdef int ns = p.n_special
    cdef int L = p.ring_len
    cdef double dt = p.dt
    cdef double* v = st.v
    cdef double* vnew = st.vnew
    cdef double* w = st.w
    cdef double* syn = st.syn
    cdef double* ring = st.ring
    cdef double* ref = st.ref
    cdef double* sa = st.sa
    cdef double* sb = st.sb
    cdef int32_t* cbuf = st.cbuf
    cdef uint8_t* dirty = st.dirty
    cdef uint64_t* nstate = st.nstate
    cdef double* bg_next = st.bg_next
    cdef Rng* bg_rng = st.bg_rng
    cdef double* madc_prev = st.madc_prev
    cdef double* vq = st.vq
    cdef int32_t* spiked = st.spiked
    cdef double* sfrac = st.sfrac
    cdef double* tmp
    cdef int n_spiked
    cdef double* ie = syn
    cdef double* ii = syn + n
    cdef int i, g, m, j, s
    cdef int slot = st.slot
    cdef int32_t key
    cdef int64_t step, k, arrival, ks
    cdef size_t q
    cdef int64_t ev = st.ev
    cdef int64_t ev_end = st.ev_end
    cdef int64_t cadc_next = st.cadc_next
    cdef int64_t madc_next = st.madc_next
    cdef double t, t_end, vi, frac, ts, tk
    cdef int hits
    cdef uint8_t* cadc_out = p.cadc_out + st.index * p.n_cadc * p.n_total
    cdef uint16_t* madc_out = p.madc_out + st.index * p.n_madc_samples * p.n_madc
    cdef double mval
    cdef double madc_sf[2]  # fraction of the step at which a MADC circuit spiked, or 2
    cdef int any_bg = st.any_bg
    cdef int plastic = p.plastic
    cdef vector[int32_t]* queues = st.queues
    cdef uint8_t* counts = st.counts

    for step in range(st.step, step_end):
        t = step * dt
        t_end = t + dt
        # --- ticks of compiled plasticity programs ---------------------------------------
        if st.ntk_next < st.ntk_end and p.ntk_step[st.ntk_next] <= step:
            _native_ticks(p, st, step)
        # --- events arriving now -------------------------------------------------------
        if dirty[slot]:
            if plastic:
                for q in range(queues[slot].size()):
                    _deliver_plastic(p, st, ring + <int64_t>slot * 2 * n, queues[slot][q], t)
                queues[slot].clear()
            cysim_add_clear(2 * n, syn, ring + <int64_t>slot * 2 * n)
            dirty[slot] = 0
        while ev < ev_end and p.ev_step[ev] <= step:
            key = p.ev_key[ev]
            if plastic:
                _deliver_plastic(p, st, syn, key, t)
            else:
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
                        if plastic:
                            queues[arrival % L].push_back(p.bg_keys[ks])
                        else:
                            _deliver(p, ring, <int>(arrival % L), p.bg_keys[ks])
                    dirty[arrival % L] = 1
                    if p.bg_mode[g] == 1:
                        bg_next[g] += -log(_uniform(&bg_rng[g])) * p.bg_period[g]
                    else:
                        bg_next[g] += p.bg_period[g]
        # --- CADC samples the state at t ----------------------------------------------
        if cadc_next < p.n_cadc and p.cadc_steps[cadc_next] == step:
            cysim_cadc_sample(p.n_total, n, v, vq, c.e_l, prho, psig,
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
        if p.cpl_groups > 0:
            hits |= _couple(p, c, ref_steps, st.gcross, vnew, ref)
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
            ref[i] = ref_steps[i]
            if p.flags[i] & F_ADAPT:
                w[i] += b[i]
            for m in range(p.n_madc):
                if p.madc_local[m] == i:
                    madc_sf[m] = frac
            if plastic:
                if counts[i] < 255:
                    counts[i] += 1
                if p.sensors:
                    _post_spike(p, st, i, ts)
            if p.out_ptr[i + 1] > p.out_ptr[i]:
                arrival = llround((ts + p.latency) / dt)
                if arrival <= step:
                    arrival = step + 1
                for ks in range(p.out_ptr[i], p.out_ptr[i + 1]):
                    if plastic:
                        queues[arrival % L].push_back(p.out_keys[ks])
                    else:
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

    if step_end > st.step:
        st.step = step_end
    if st.ntk_next < st.ntk_end and p.ntk_step[st.ntk_next] <= step_end:
        _native_ticks(p, st, step_end)
    # a pausing run takes the CADC sample due at the pause now, so that a kernel sees the
    # state at the tick (the same draws in the same order as without the pause)
    if plastic and step_end < p.n_steps and cadc_next < p.n_cadc \
            and p.cadc_steps[cadc_next] == step_end:
        cysim_cadc_sample(p.n_total, n, v, vq, c.e_l, prho, psig,
                          cadc_next > 0, p.cadc_gain, p.cadc_offset, p.cadc_noise, nstate,
                          p.order, cbuf, cadc_out + cadc_next * p.n_total)
        cadc_next += 1
    st.slot = slot
    st.v = v
    st.vnew = vnew
    st.ev = ev
    st.cadc_next = cadc_next
    st.madc_next = madc_next
    sp_circ_local.swap(st.sp_circ[0])
    sp_time_local.swap(st.sp_time[0])


cdef void _finish_trial(const Params* p, Trial* st) noexcept nogil:
    """The end of the run: a sample time that rounds to the end reads the final state."""
    cdef uint8_t* cadc_out = p.cadc_out + st.index * p.n_cadc * p.n_total
    if st.cadc_next < p.n_cadc and p.cadc_steps[st.cadc_next] == p.n_steps:
        cysim_cadc_sample(p.n_total, p.n, st.v, st.vq, st.c.e_l, st.passive_rho,
                          st.passive_sigma, st.cadc_next > 0, p.cadc_gain, p.cadc_offset,
                          p.cadc_noise, st.nstate, p.order, st.cbuf,
                          cadc_out + st.cadc_next * p.n_total)
        st.cadc_next += 1


cdef int _run_trial(const Params* p, Trial* st) noexcept nogil:
    """A whole trial in one go (runs without a plasticity program)."""
    if _init_trial(p, st) != 0:
        return -1
    _advance(p, st, p.n_steps)
    _finish_trial(p, st)
    _free_trial(st)
    return 0


_CIRCUIT_FIELDS = (
    "e_l", "p_mem", "p_vexc", "p_vinh", "p_vconst", "i_bias", "p_exc", "p_inh", "bias_step",
    "v_reset", "v_th", "noise_step", "v_th_spike", "v_th_coupled", "v_t", "delta_t", "exp_scale",
    "inv_tau_m", "f_exc", "f_inh", "e_rev_e", "e_rev_i", "p_w", "a", "m_exp", "m_adapt", "m_coba", "b",
    "ref_steps", "passive_rho", "passive_sigma",
)


cdef const double* _f64_ptr(dict keep, str name, object value, Py_ssize_t size=-1) except? NULL:
    """Pointer to a contiguous float64 copy of ``value`` kept alive in ``keep``."""
    a = np.ascontiguousarray(value, dtype=np.float64).reshape(-1)
    if size >= 0 and a.size != size:
        raise ValueError(f"engine input {name!r} has {a.size} entries, expected {size}")
    if a.size == 0:
        a = np.zeros(1)
    keep[name] = a
    cdef double[::1] d = a
    return &d[0]


cdef object _bind_circuits(Trial* st, dict arrays, dict keep, Py_ssize_t size):
    """Point the per-circuit parameters of ``st`` at ``arrays`` (kept in ``keep``)."""
    st.c.e_l = _f64_ptr(keep, "e_l", arrays["e_l"], size)
    st.c.p_mem = _f64_ptr(keep, "p_mem", arrays["p_mem"], size)
    st.c.p_vexc = _f64_ptr(keep, "p_vexc", arrays["p_vexc"], size)
    st.c.p_vinh = _f64_ptr(keep, "p_vinh", arrays["p_vinh"], size)
    st.c.p_vconst = _f64_ptr(keep, "p_vconst", arrays["p_vconst"], size)
    st.c.i_bias = _f64_ptr(keep, "i_bias", arrays["i_bias"], size)
    st.c.p_exc = _f64_ptr(keep, "p_exc", arrays["p_exc"], size)
    st.c.p_inh = _f64_ptr(keep, "p_inh", arrays["p_inh"], size)
    st.c.bias_step = _f64_ptr(keep, "bias_step", arrays["bias_step"], size)
    st.c.v_reset = _f64_ptr(keep, "v_reset", arrays["v_reset"], size)
    st.c.v_th = _f64_ptr(keep, "v_th", arrays["v_th"], size)
    st.c.sigma = _f64_ptr(keep, "noise_step", arrays["noise_step"], size)
    st.c.v_th_spike = _f64_ptr(keep, "v_th_spike", arrays["v_th_spike"], size)
    st.c.v_th_coupled = _f64_ptr(keep, "v_th_coupled", arrays["v_th_coupled"], size)
    st.c.v_t = _f64_ptr(keep, "v_t", arrays["v_t"], size)
    st.c.delta_t = _f64_ptr(keep, "delta_t", arrays["delta_t"], size)
    st.c.exp_scale = _f64_ptr(keep, "exp_scale", arrays["exp_scale"], size)
    st.c.inv_tau_m = _f64_ptr(keep, "inv_tau_m", arrays["inv_tau_m"], size)
    st.c.f_exc = _f64_ptr(keep, "f_exc", arrays["f_exc"], size)
    st.c.f_inh = _f64_ptr(keep, "f_inh", arrays["f_inh"], size)
    st.c.e_rev_e = _f64_ptr(keep, "e_rev_e", arrays["e_rev_e"], size)
    st.c.e_rev_i = _f64_ptr(keep, "e_rev_i", arrays["e_rev_i"], size)
    st.c.p_w = _f64_ptr(keep, "p_w", arrays["p_w"], size)
    st.c.a = _f64_ptr(keep, "a", arrays["a"], size)
    st.c.m_exp = _f64_ptr(keep, "m_exp", arrays["m_exp"], size)
    st.c.m_adapt = _f64_ptr(keep, "m_adapt", arrays["m_adapt"], size)
    st.c.m_coba = _f64_ptr(keep, "m_coba", arrays["m_coba"], size)
    st.b = _f64_ptr(keep, "b", arrays["b"], size)
    st.ref_steps = _f64_ptr(keep, "ref_steps", arrays["ref_steps"], size)
    st.passive_rho = _f64_ptr(keep, "passive_rho", arrays["passive_rho"], size)
    st.passive_sigma = _f64_ptr(keep, "passive_sigma", arrays["passive_sigma"], size)


cdef class Session:
    """A batched run that can pause between steps (for plasticity kernels).

    ``Session(inp, plastic=None, threads=1)``: ``inp`` from :func:`cysim.engine.prepare`;
    ``plastic`` (a dict from :mod:`cysim.plasticity`) switches on the event path with
    per-trial weights, driver short-term plasticity, correlation sensors and spike
    counters. :meth:`start` allocates the trials, :meth:`advance` integrates all of them up
    to a step, :meth:`outputs` returns what was recorded so far. Between calls Python may
    rewrite weights (then :meth:`apply_weights`) and per-trial circuit parameters
    (:meth:`set_trial_circuits`), read sensors (:meth:`read_correlation`) and counters.
    """

    cdef Params p
    cdef Trial* trials
    cdef int64_t n_trials
    cdef int threads
    cdef int started
    cdef int finished
    cdef dict keep
    cdef list trial_keep
    cdef vector[vector[int32_t]] sp_circ
    cdef vector[vector[double]] sp_time
    cdef vector[vector[int32_t]] queues
    cdef vector[vector[int32_t]] lists  # touched keys and circuits, keep lists
    cdef vector[vector[NatItem]] items
    cdef readonly object cadc
    cdef readonly object madc
    cdef readonly dict arrays  # the per-trial plasticity arrays (NumPy, shared with C)
    cdef readonly dict buffers  # name -> the flat buffer each of them lies in

    def __cinit__(self):
        self.trials = NULL

    def __dealloc__(self):
        cdef int64_t tr
        if self.trials != NULL:
            for tr in range(self.n_trials):
                _free_trial(&self.trials[tr])
            free(self.trials)
            self.trials = NULL

    def __init__(self, dict inp, dict plastic=None, int threads=1):
        cdef int64_t n_trials = inp["n_trials"]
        cdef int n = inp["n"]
        self.keep = {}
        keep = self.keep

        def f64(name, value=None):
            a = np.ascontiguousarray(inp[name] if value is None else value, dtype=np.float64).reshape(-1)
            if a.size == 0:
                a = np.zeros(1)
            keep[name] = a
            return a

        def typed(name, dtype, value=None):
            a = np.ascontiguousarray(inp[name] if value is None else value, dtype=dtype).reshape(-1)
            if a.size == 0:
                a = np.zeros(1, dtype=dtype)
            keep[name] = a
            return a

        cdef double[::1] d
        cdef int64_t[::1] li
        cdef int32_t[::1] ii
        cdef uint8_t[::1] bb
        cdef uint64_t[::1] uu
        cdef Params* p = &self.p

        p.dt = inp["dt"]
        p.n_steps = inp["n_steps"]
        p.n = n
        p.latency = inp["latency"]
        p.rail = inp["rail"]
        p.ring_len = inp["ring_len"]
        bb = typed("flags", np.uint8); p.flags = &bb[0]
        p.n_special = inp["n_special"]
        p.has_noise = 1 if inp["has_noise"] else 0
        li = typed("key_ptr", np.int64); p.key_ptr = &li[0]
        ii = typed("key_target", np.int32); p.key_target = &ii[0]
        d = f64("key_amp"); p.key_amp = &d[0]
        li = typed("out_ptr", np.int64); p.out_ptr = &li[0]
        ii = typed("out_keys", np.int32); p.out_keys = &ii[0]
        li = typed("ev_ptr", np.int64); p.ev_ptr = &li[0]
        li = typed("ev_step", np.int64); p.ev_step = &li[0]
        ii = typed("ev_key", np.int32); p.ev_key = &ii[0]
        p.n_bg = inp["n_bg"]
        bb = typed("bg_mode", np.uint8); p.bg_mode = &bb[0]
        d = f64("bg_period"); p.bg_period = &d[0]
        li = typed("bg_ptr", np.int64); p.bg_ptr = &li[0]
        ii = typed("bg_keys", np.int32); p.bg_keys = &ii[0]
        uu = typed("bg_seeds", np.uint64); p.bg_seeds = &uu[0]
        uu = typed("noise_seeds", np.uint64); p.noise_seeds = &uu[0]
        li = typed("cadc_steps", np.int64); p.cadc_steps = &li[0]
        p.n_total = inp["n_total"]
        d = f64("cadc_gain"); p.cadc_gain = &d[0]
        d = f64("cadc_offset"); p.cadc_offset = &d[0]
        p.cadc_noise = inp["cadc_noise"]
        d = f64("madc_gain"); p.madc_gain = &d[0]
        d = f64("madc_offset"); p.madc_offset = &d[0]
        p.madc_noise = inp["madc_noise"]
        p.n_cadc = inp["n_cadc"]
        ii = typed("madc_local", np.int32); p.madc_local = &ii[0]
        p.n_madc = inp["n_madc"]
        p.n_madc_samples = inp["n_madc_samples"]
        p.madc_period = inp["madc_period"]
        li = typed("order", np.int64); p.order = &li[0]
        p.cpl_groups = inp.get("cpl_groups", 0)
        li = typed("cpl_ptr", np.int64, inp.get("cpl_ptr", np.zeros(1, dtype=np.int64))); p.cpl_ptr = &li[0]
        ii = typed("cpl_idx", np.int32, inp.get("cpl_idx", np.zeros(0, dtype=np.int32))); p.cpl_idx = &ii[0]
        li = typed("cpl_mat_ptr", np.int64, inp.get("cpl_mat_ptr", np.zeros(1, dtype=np.int64))); p.cpl_mat_ptr = &li[0]
        d = f64("cpl_mat", inp.get("cpl_mat", np.zeros(0))); p.cpl_mat = &d[0]
        bb = typed("cpl_contig", np.uint8, inp.get("cpl_contig", np.zeros(0, dtype=np.uint8))); p.cpl_contig = &bb[0]

        # shared per-circuit parameters: bound once into a template trial
        cdef Trial shared
        _bind_circuits(&shared, {name: inp[name] for name in _CIRCUIT_FIELDS}, keep, -1)
        p.c = shared.c
        p.b = shared.b
        p.ref_steps = shared.ref_steps
        p.passive_rho = shared.passive_rho
        p.passive_sigma = shared.passive_sigma

        self.cadc = np.zeros((n_trials, max(p.n_cadc, 0), p.n_total), dtype=np.uint8)
        self.madc = np.zeros((n_trials, max(p.n_madc_samples, 0), p.n_madc), dtype=np.uint16)
        cdef uint8_t[::1] cflat = self.cadc.reshape(-1) if self.cadc.size else np.zeros(1, dtype=np.uint8)
        cdef uint16_t[::1] mflat = self.madc.reshape(-1) if self.madc.size else np.zeros(1, dtype=np.uint16)
        keep["cadc_flat"] = cflat
        keep["madc_flat"] = mflat
        p.cadc_out = &cflat[0]
        p.madc_out = &mflat[0]

        self.n_trials = n_trials
        self.threads = max(1, min(threads, n_trials if n_trials > 0 else 1))
        self.trials = <Trial*>calloc(max(n_trials, 1), sizeof(Trial))
        if self.trials == NULL:
            raise MemoryError("the virtual chip could not allocate its trials")
        self.sp_circ.resize(n_trials)
        self.sp_time.resize(n_trials)
        self.trial_keep = [None] * n_trials
        cdef int64_t tr
        for tr in range(n_trials):
            self.trials[tr].index = tr
            self.trials[tr].sp_circ = &self.sp_circ[tr]
            self.trials[tr].sp_time = &self.sp_time[tr]
            self.trials[tr].c = p.c
            self.trials[tr].b = p.b
            self.trials[tr].ref_steps = p.ref_steps
            self.trials[tr].passive_rho = p.passive_rho
            self.trials[tr].passive_sigma = p.passive_sigma
        self.arrays = {}
        self.buffers = {}
        p.plastic = 0
        p.sensors = 0
        p.any_stp = 0
        if plastic is not None:
            self._init_plastic(plastic)

    cdef _init_plastic(self, dict pl):
        cdef Params* p = &self.p
        cdef int64_t T = self.n_trials
        cdef int64_t S = pl["n_syn"]
        cdef int64_t E = pl["n_entries"]
        cdef int64_t Sa = max(S, 1)
        cdef int64_t Ea = max(E, 1)
        cdef int n = p.n
        cdef int nn = max(n, 1)
        cdef int64_t tr
        cdef Trial* st
        cdef int stride = p.ring_len + 3  # queues of neighbouring trials on other cache lines
        keep = self.keep

        def typed(name, dtype):
            a = np.ascontiguousarray(pl[name], dtype=dtype).reshape(-1)
            if a.size == 0:
                a = np.zeros(1, dtype=dtype)
            keep["pl_" + name] = a
            return a

        cdef double[::1] d
        cdef int64_t[::1] li
        cdef int32_t[::1] ii
        cdef uint8_t[::1] bb
        cdef float[::1] ff
        p.plastic = 1
        p.sensors = 1 if pl["sensors"] else 0
        p.any_stp = 1 if pl["any_stp"] else 0
        p.n_syn = S
        p.n_entries = E
        # the plastic routing table replaces the static one
        li = typed("key_ptr", np.int64); p.key_ptr = &li[0]
        ii = typed("key_target", np.int32); p.key_target = &ii[0]
        ii = typed("entry_syn", np.int32); p.entry_syn = &ii[0]
        ii = typed("entry_drv", np.int32); p.entry_drv = &ii[0]
        ii = typed("entry_circ", np.int32); p.entry_circ = &ii[0]
        d = typed("eta_a", np.float64); p.eta_a = &d[0]
        d = typed("inv_tau_a", np.float64); p.inv_tau_a = &d[0]
        d = typed("offh_a", np.float64); p.offh_a = &d[0]
        li = typed("post_ptr", np.int64); p.post_ptr = &li[0]
        ii = typed("post_syn", np.int32); p.post_syn = &ii[0]
        d = typed("eta_c", np.float64); p.eta_c = &d[0]
        d = typed("inv_tau_c", np.float64); p.inv_tau_c = &d[0]
        d = typed("offh_c", np.float64); p.offh_c = &d[0]
        ii = typed("syn_entry", np.int32); p.syn_entry = &ii[0]
        d = typed("syn_dg", np.float64); p.syn_dg = &d[0]
        d = typed("syn_sg", np.float64); p.syn_sg = &d[0]
        ii = typed("syn_gidx", np.int32); p.syn_gidx = &ii[0]
        bb = typed("zero_c", np.uint8); p.zero_c = &bb[0]
        bb = typed("zero_a", np.uint8); p.zero_a = &bb[0]
        p.corr_sat = pl["corr_sat"]
        li = typed("stp_key_ptr", np.int64); p.stp_key_ptr = &li[0]
        ii = typed("stp_key_drv", np.int32); p.stp_key_drv = &ii[0]
        d = typed("stp_U", np.float64); p.stp_U = &d[0]
        d = typed("stp_inv_rec", np.float64); p.stp_inv_rec = &d[0]
        d = typed("stp_inv_fac", np.float64); p.stp_inv_fac = &d[0]
        p.n_keys = pl["n_keys"]
        ii = typed("j_key", np.int32); p.j_key = &ii[0]
        ii = typed("k_j", np.int32); p.k_j = &ii[0]
        d = typed("key_live_us", np.float64); p.key_live_us = &d[0]
        ii = typed("syn_post", np.int32); p.syn_post = &ii[0]
        bb = typed("zero_cj", np.uint8); p.zero_cj = &bb[0]
        bb = typed("zero_ak", np.uint8); p.zero_ak = &bb[0]
        bb = typed("zero_aj", np.uint8); p.zero_aj = &bb[0]
        bb = typed("zero_ck", np.uint8); p.zero_ck = &bb[0]
        li = typed("kc_ptr", np.int64); p.kc_ptr = &li[0]
        ii = typed("kc_cons", np.int32); p.kc_cons = &ii[0]
        li = typed("cc_ptr", np.int64); p.cc_ptr = &li[0]
        ii = typed("cc_cons", np.int32); p.cc_cons = &ii[0]
        cdef int G = pl["n_native"]
        p.n_native = G
        p.n_cons = 1 + G
        li = typed("nat_off", np.int64); p.nat_off = &li[0]
        ii = typed("nat_mult", np.int32); p.nat_mult = &ii[0]
        bb = typed("nat_reset", np.uint8); p.nat_reset = &bb[0]
        ii = typed("q_syn", np.int32); p.q_syn = &ii[0]
        bb = typed("nat_uniform", np.uint8); p.nat_uniform = &bb[0]
        li = typed("nat_par", np.int64); p.nat_par = &li[0]
        d = typed("q_par", np.float64); p.q_par = &d[0]
        bb = typed("nat_in_state", np.uint8); p.nat_in_state = &bb[0]
        p.q_kdiv = NULL
        if np.asarray(pl["q_kdiv"]).size:
            d = typed("q_kdiv", np.float64); p.q_kdiv = &d[0]
        ii = typed("j_q", np.int32); p.j_q = &ii[0]
        ii = typed("k_q", np.int32); p.k_q = &ii[0]
        bb = typed("jinfo", np.uint8); p.jinfo = <const EntryInfo*>&bb[0]
        bb = typed("kinfo", np.uint8); p.kinfo = <const EntryInfo*>&bb[0]
        if sizeof(EntryInfo) != 24 or sizeof(NatState) != 32:
            raise RuntimeError("internal: unexpected layout of the compiled-program state")
        p.found_cap = pl["found_cap"]
        ff = typed("thr_c", np.float32); p.thr_c = &ff[0]
        ff = typed("thr_a", np.float32); p.thr_a = &ff[0]
        li = typed("ntk_step", np.int64); p.ntk_step = &li[0]
        ii = typed("ntk_prog", np.int32); p.ntk_prog = &ii[0]
        p.n_ntk = np.asarray(pl["ntk_step"]).size
        cdef int64_t Q = max(int(pl["nat_off"][G]), 1)
        cdef int64_t NT = max(p.n_ntk, 1)
        cdef int ncons = p.n_cons

        n_drv = pl["n_drivers"]
        pool = pl.get("_pool") or {}

        buffers = {}
        self.buffers = buffers

        def new_array(name, shape, dtype, fill, align=0):
            """A filled array (``fill=None``: left as it is, for arrays written whole
            below) that starts on an ``align``-byte boundary; in the memory of a finished
            session's buffer of that name if ``plastic["_pool"]`` has one large enough
            (filling touches no fresh pages). :attr:`buffers` keeps the flat buffer of
            each."""
            itemsize = np.dtype(dtype).itemsize
            size = int(np.prod(shape))
            pad = align // itemsize if align else 0
            buf = pool.get(name)
            fresh = buf is None or buf.size < size + pad or buf.dtype != np.dtype(dtype)
            if fresh:
                if fill is None:
                    buf = np.empty(size + pad, dtype=dtype)
                elif fill == 0:
                    buf = np.zeros(size + pad, dtype=dtype)
                else:
                    buf = np.full(size + pad, fill, dtype=dtype)
            buffers[name] = buf
            start = (-buf.ctypes.data % align) // itemsize if align else 0
            a = buf[start : start + size].reshape(shape)
            if fill is not None and not fresh:
                a.fill(fill)
            return a

        amp0 = pl.get("amp0")
        # arrays that are written whole below are not filled first: the weights and, when
        # the configured amplitudes are given, the weights in effect and the amplitudes;
        # the sensors and their readouts (emptied by reset_correlation); the compiled
        # programs' state (copied below); the live lists (read below live_n)
        given = amp0 is not None and E > 0
        whole = None if S > 0 and E > 0 else 0
        arrays = {}
        arrays["weights"] = new_array("weights", (T, Sa), np.int16, None if S > 0 else 0)
        arrays["applied"] = new_array("applied", (T, Sa), np.int16, None if given else 0)
        arrays["changed"] = new_array("changed", (T, Sa // 64 + 1), np.uint8, 0)
        arrays["read_c"] = new_array("read_c", (T, Sa), np.uint8, whole)
        arrays["read_a"] = new_array("read_a", (T, Sa), np.uint8, whole)
        arrays["amp"] = new_array("amp", (T, Ea), np.float64, None if given else 0)
        arrays["acc_a"] = new_array("acc_a", (T, Ea), np.float32, whole)
        arrays["key_last"] = new_array("key_last", (T, p.n_keys), np.float64, -np.inf)
        arrays["acc_c"] = new_array("acc_c", (T, Ea), np.float32, whole)
        arrays["live_j"] = new_array("live_j", (T, Ea), np.int32, None)
        arrays["live_n"] = new_array("live_n", (T, nn), np.int32, 0)
        arrays["live_f"] = new_array("live_f", (T, Ea), np.uint8, 0)
        arrays["gain"] = new_array("gain", (T, 2 * nn), np.float64, 0)
        arrays["last_post"] = new_array("last_post", (T, nn), np.float64, -np.inf)
        arrays["counts"] = new_array("counts", (T, nn), np.uint8, 0)
        arrays["stp_x"] = new_array("stp_x", (T, n_drv), np.float64, 1)
        arrays["stp_u"] = new_array("stp_u", (T, n_drv), np.float64, 0)
        arrays["stp_last"] = new_array("stp_last", (T, n_drv), np.float64, -np.inf)
        arrays["stp_f"] = new_array("stp_f", (T, n_drv), np.float64, 1)
        arrays["dflag_k"] = new_array("dflag_k", (T, ncons * p.n_keys), np.uint8, 0)
        arrays["dflag_c"] = new_array("dflag_c", (T, ncons * nn), np.uint8, 0)
        # NatState per position (32 bytes, each in one cache line)
        arrays["nat"] = new_array("nat", (T, 4 * Q), np.float64, None, align=64)
        arrays["nat_stale"] = new_array("nat_stale", (T, max(G, 1)), np.uint8, 0)
        arrays["nat_full"] = new_array("nat_full", (T, max(G, 1)), np.uint8, 1)
        arrays["ntk_clipped"] = new_array("ntk_clipped", (T, NT), np.int64, 0)
        # the lists of sensors that crossed (written up to their length only)
        arrays["found"] = new_array("found", (T, max(p.found_cap, 0) + 1 if G > 0 else 1), np.int32, None)
        arrays["weights"][:, :S] = np.asarray(pl["weights"], dtype=np.int16)[None, :]
        arrays["gain"][:, : 2 * n] = np.asarray(pl["gain"], dtype=np.float64).reshape(1, -1)
        arrays["stp_u"][:] = np.asarray(pl["stp_U"], dtype=np.float64)[None, :]
        self.arrays = arrays
        cdef int16_t[:, ::1] w16 = arrays["weights"]
        cdef int16_t[:, ::1] app = arrays["applied"]
        cdef uint8_t[:, ::1] changed = arrays["changed"]
        cdef uint8_t[:, ::1] read_c = arrays["read_c"]
        cdef uint8_t[:, ::1] read_a = arrays["read_a"]
        cdef double[:, ::1] amp = arrays["amp"]
        cdef float[:, ::1] acc_a = arrays["acc_a"]
        cdef double[:, ::1] key_last = arrays["key_last"]
        cdef float[:, ::1] acc_c = arrays["acc_c"]
        cdef int32_t[:, ::1] live_j = arrays["live_j"]
        cdef int32_t[:, ::1] live_n = arrays["live_n"]
        cdef uint8_t[:, ::1] live_f = arrays["live_f"]
        cdef double[:, ::1] gain = arrays["gain"]
        cdef double[:, ::1] last_post = arrays["last_post"]
        cdef uint8_t[:, ::1] counts = arrays["counts"]
        cdef double[:, ::1] stp_x = arrays["stp_x"]
        cdef double[:, ::1] stp_u = arrays["stp_u"]
        cdef double[:, ::1] stp_last = arrays["stp_last"]
        cdef double[:, ::1] stp_f = arrays["stp_f"]
        cdef uint8_t[:, ::1] dflag_k = arrays["dflag_k"]
        cdef uint8_t[:, ::1] dflag_c = arrays["dflag_c"]
        cdef double[:, ::1] nat = arrays["nat"]
        cdef uint8_t[:, ::1] nat_stale = arrays["nat_stale"]
        cdef uint8_t[:, ::1] nat_full = arrays["nat_full"]
        cdef int64_t[:, ::1] ntk_clipped = arrays["ntk_clipped"]
        cdef int32_t[:, ::1] found = arrays["found"]
        # per trial: ncons key lists, ncons circuit lists, G keep lists
        cdef int64_t per = 2 * ncons + G
        self.lists.resize(T * per)
        self.items.resize(T)
        self.queues.resize(T * stride)
        for tr in range(T):
            st = &self.trials[tr]
            st.queues = &self.queues[tr * stride]
            st.weights = &w16[tr, 0]
            st.applied = &app[tr, 0]
            st.changed = &changed[tr, 0]
            st.read_c = &read_c[tr, 0]
            st.read_a = &read_a[tr, 0]
            st.amp = &amp[tr, 0]
            st.acc_a = &acc_a[tr, 0]
            st.acc_c = &acc_c[tr, 0]
            st.live_j = &live_j[tr, 0]
            st.live_n = &live_n[tr, 0]
            st.live_f = &live_f[tr, 0]
            st.gain = &gain[tr, 0]
            st.last_post = &last_post[tr, 0]
            st.counts = &counts[tr, 0]
            st.stp_x = &stp_x[tr, 0]
            st.stp_u = &stp_u[tr, 0]
            st.stp_last = &stp_last[tr, 0]
            st.stp_f = &stp_f[tr, 0]
            st.key_last = &key_last[tr, 0]
            st.dflag_k = &dflag_k[tr, 0]
            st.dflag_c = &dflag_c[tr, 0]
            st.dlist_k = &self.lists[tr * per]
            st.dlist_c = &self.lists[tr * per + ncons]
            st.keep = &self.lists[tr * per + 2 * ncons]
            st.found_buf = &found[tr, 0]
            st.found_n = 0
            st.cur = &self.items[tr]
            st.nat = <NatState*>&nat[tr, 0]
            st.nat_stale = &nat_stale[tr, 0]
            st.nat_full = &nat_full[tr, 0]
            st.ntk_clipped = &ntk_clipped[tr, 0]
            st.stamp = 0
            st.ntk_next = 0
            st.ntk_end = 0
        self.reset_correlation(-1)
        # the compiled programs' state at the start (cysim.plasticity.NAT_STATE: no carry,
        # never listed, the configured weights, what the programs keep there), copied
        cdef int64_t nq = pl["nat_off"][G]
        cdef uint8_t[::1] nat0 = np.ascontiguousarray(pl["nat0"]).view(np.uint8).reshape(-1) \
            if nq > 0 else np.zeros(1, dtype=np.uint8)
        if nq > 0 and nat0.shape[0] != nq * sizeof(NatState):
            raise RuntimeError("internal: the compiled programs' initial state has the wrong size")
        for tr in range(T):
            st = &self.trials[tr]
            if nq > 0:
                memcpy(st.nat, &nat0[0], nq * sizeof(NatState))
            if Q > nq:
                memset(st.nat + nq, 0, (Q - nq) * sizeof(NatState))
        if not given:
            self.apply_weights(force=True)  # (compiled programs: a full first tick)
            return
        # the configured weights in effect and the amplitudes they give; a program whose
        # bounds hold them all need not visit every synapse at its first tick
        arrays["applied"][:, :S] = arrays["weights"][:, :S]
        arrays["amp"][:, :E] = np.asarray(amp0, dtype=np.float64)[None, :]
        cdef uint8_t[::1] settled = typed("nat_settled", np.uint8)
        for tr in range(T):
            st = &self.trials[tr]
            for g in range(G):
                st.nat_full[g] = 0 if settled[g] else 1

    @property
    def step(self):
        """The next step to integrate (the same for all trials)."""
        return self.trials[0].step if self.n_trials > 0 else 0

    @property
    def engine_ticks_done(self):
        """Number of engine ticks of compiled programs run so far (the same for all trials)."""
        return self.trials[0].ntk_next if self.n_trials > 0 else 0

    @property
    def cadc_count(self):
        """Number of CADC samples taken so far (the same for all trials)."""
        return self.trials[0].cadc_next if self.n_trials > 0 else 0

    def start(self):
        """Allocate and initialise every trial (in parallel, where its thread runs it)."""
        cdef int64_t tr
        cdef int failed = 0
        if self.started:
            return
        self.started = 1
        if self.n_trials == 1 or self.threads == 1:
            for tr in range(self.n_trials):
                if _init_trial(&self.p, &self.trials[tr]) != 0:
                    failed += 1
        else:
            with nogil:
                for tr in prange(self.n_trials, num_threads=self.threads, schedule="static"):
                    if _init_trial(&self.p, &self.trials[tr]) != 0:
                        failed += 1
        if failed:
            raise MemoryError("the virtual chip could not allocate its state for a trial")

    def advance(self, int64_t step_end, int64_t ticks=-1):
        """Integrate all trials up to (excluding) ``step_end`` (at most the run's end),
        running the engine ticks of compiled programs (``plastic["ntk_step"]``) with an
        index below ``ticks`` (-1: all) at their steps, those at ``step_end`` included."""
        cdef int64_t tr
        if not self.started:
            self.start()
        if step_end > self.p.n_steps:
            step_end = self.p.n_steps
        if ticks < 0 or ticks > self.p.n_ntk:
            ticks = self.p.n_ntk
        for tr in range(self.n_trials):
            self.trials[tr].ntk_end = ticks
        if self.n_trials == 1 or self.threads == 1:
            with nogil:
                for tr in range(self.n_trials):
                    _advance(&self.p, &self.trials[tr], step_end)
        else:
            with nogil:
                for tr in prange(self.n_trials, num_threads=self.threads, schedule="static"):
                    _advance(&self.p, &self.trials[tr], step_end)

    def run_all(self):
        """Integrate every trial from start to end in one go and return :meth:`outputs`."""
        cdef int64_t tr
        cdef int failed = 0
        cdef int rc
        self.started = 1
        self.finished = 1
        with nogil:
            for tr in prange(self.n_trials, num_threads=self.threads, schedule="dynamic"):
                rc = _run_trial(&self.p, &self.trials[tr])
                if rc != 0:
                    failed += 1
        if failed:
            raise MemoryError("the virtual chip could not allocate its state for a trial")
        return self._collect(self.cadc, self.madc)

    def finish(self):
        """Integrate to the end, take the last samples and return :meth:`outputs`."""
        cdef int64_t tr
        self.advance(self.p.n_steps)
        if not self.finished:
            self.finished = 1
            for tr in range(self.n_trials):
                _finish_trial(&self.p, &self.trials[tr])
        return self.outputs()

    def outputs(self):
        """``(spike_trial, spike_local, spike_time_us, cadc, madc)`` recorded so far:
        CADC and MADC samples up to the current step (all samples after :meth:`finish`)."""
        if self.n_trials == 0 or not self.started:
            return self._collect(self.cadc[:, :0], self.madc[:, :0])
        return self._collect(
            self.cadc[:, : self.trials[0].cadc_next], self.madc[:, : self.trials[0].madc_next]
        )

    cdef _collect(self, cadc, madc):
        cdef int64_t n_trials = self.n_trials
        cdef int64_t tr
        counts = np.array([self.sp_circ[tr].size() for tr in range(n_trials)], dtype=np.int64)
        total = int(counts.sum())
        spike_trial = np.repeat(np.arange(n_trials, dtype=np.int32), counts)
        spike_local = np.empty(total, dtype=np.int32)
        spike_time = np.empty(total, dtype=np.float64)
        cdef int32_t[::1] sl = spike_local if total else np.zeros(1, dtype=np.int32)
        cdef double[::1] st = spike_time if total else np.zeros(1)
        cdef int64_t pos = 0
        cdef size_t j
        for tr in range(n_trials):
            for j in range(self.sp_circ[tr].size()):
                sl[pos] = self.sp_circ[tr][j]
                st[pos] = self.sp_time[tr][j]
                pos += 1
        return spike_trial, spike_local, spike_time, cadc, madc

    def apply_weights(self, bint force=False):
        """Bring the weights written by a kernel into effect; returns how many were out of
        0..63 (they are clipped, also in the written array). Compiled programs then visit
        all their synapses at their next tick."""
        cdef Params* p = &self.p
        cdef int64_t tr, clipped = 0
        cdef int g
        if not p.plastic:
            return 0
        with nogil:
            for tr in range(self.n_trials):
                clipped += _apply_trial_weights(p, &self.trials[tr], force)
                for g in range(p.n_native):
                    if self.trials[tr].nat_full[g] == 0:
                        self.trials[tr].nat_full[g] = 1
        return clipped

    def refresh_readouts(self):
        """Bring the 8-bit sensor readouts (``arrays["read_c"]``, ``["read_a"]``) of every
        trial up to date."""
        cdef Params* p = &self.p
        cdef int64_t tr
        if not (p.plastic and p.sensors):
            return
        with nogil:
            for tr in range(self.n_trials):
                _refresh_readouts(p, &self.trials[tr])

    def native_tick(self, int g):
        """Run a tick of compiled program ``g`` in every trial now; returns the number of
        weights clipped to 0..63 (all trials)."""
        cdef Params* p = &self.p
        cdef int64_t tr, clipped = 0
        if not (p.plastic and p.sensors) or not 0 <= g < p.n_native:
            raise IndexError(f"no compiled plasticity program {g}")
        if not self.started:
            self.start()
        with nogil:
            for tr in range(self.n_trials):
                clipped += _native_tick(p, &self.trials[tr], g)
        return clipped

    def set_trial_circuits(self, int64_t trial, dict arrays, gain):
        """Give trial ``trial`` its own per-circuit parameters (after a kernel rewrote its
        CapMem cells): ``arrays`` as :func:`cysim.engine.circuit_inputs` returns them (local
        order), ``gain`` the synaptic gains [exc..., inh...] of the integrated circuits."""
        cdef Params* p = &self.p
        if not 0 <= trial < self.n_trials:
            raise IndexError(f"trial {trial} out of range")
        keep = {}
        _bind_circuits(&self.trials[trial], arrays, keep, p.n_total)
        self.trial_keep[trial] = keep
        if p.plastic and p.n > 0:
            self.arrays["gain"][trial, : 2 * p.n] = np.asarray(gain, dtype=np.float64).reshape(-1)
            _apply_trial_weights(p, &self.trials[trial], 1)

    def reset_correlation(self, int64_t trial=-1, bint causal=True, bint acausal=True):
        """Empty the correlation sensors of all tracked synapses of ``trial`` (-1: all)."""
        cdef Params* p = &self.p
        cdef int64_t tr
        cdef Trial* st
        if not p.plastic:
            return
        for tr in range(self.n_trials):
            if trial >= 0 and tr != trial:
                continue
            st = &self.trials[tr]
            if causal:
                memset(st.acc_c, 0, p.n_entries * sizeof(float))
                memcpy(st.read_c, p.zero_c, p.n_syn * sizeof(uint8_t))
            if acausal:
                memset(st.acc_a, 0, p.n_entries * sizeof(float))
                memcpy(st.read_a, p.zero_a, p.n_syn * sizeof(uint8_t))


cdef int64_t _apply_trial_weights(const Params* p, Trial* st, int force) noexcept nogil:
    """Clip the weights a kernel wrote to 0..63 (counting the clipped ones) and update the
    amplitudes of the changed ones (all with ``force``)."""
    cdef int64_t s, blk, end
    cdef int64_t S = p.n_syn
    cdef int16_t x
    cdef int32_t k
    cdef int64_t clipped = cysim_scan_weights(S, st.weights, st.applied, st.changed)
    for blk in range((S + 63) // 64):
        if not (force or st.changed[blk]):
            continue
        end = blk * 64 + 64
        if end > S:
            end = S
        for s in range(blk * 64, end):
            x = st.weights[s]
            if force or x != st.applied[s]:
                st.applied[s] = x
                k = p.syn_entry[s]
                if k >= 0:
                    st.amp[k] = ((<double>x * p.syn_dg[s]) * p.syn_sg[s]) * st.gain[p.syn_gidx[s]]
    return clipped


def trace_exp(x):
    """``exp(x)`` as the engine computes the correlation traces (for tests)."""
    cdef double[::1] a = np.ascontiguousarray(x, dtype=np.float64).reshape(-1)
    out = np.empty(a.shape[0])
    cdef double[::1] o = out
    cdef Py_ssize_t i
    for i in range(a.shape[0]):
        o[i] = cysim_trace_exp(a[i])
    return out.reshape(np.shape(x))


def simulate(dict inp, int threads=1):
    """Integrate all trials described by ``inp`` (see :func:`cysim.engine.prepare`).

    Returns ``(spike_trial, spike_local, spike_time_us, cadc, madc)``: spikes with local
    circuit indices, CADC samples (uint8, global circuit order), MADC samples (uint16).
    """
    return Session(inp, None, threads).run_all()
