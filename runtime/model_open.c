/*
 * model_open.c — loading a compiled network's shared library (dlopen) and
 * checking its descriptor.
 *
 * A file of its own so that programs that never load a .so, such as the
 * training programs cnnc links statically for another machine, do not pull
 * dlopen into a static link (glibc warns that a static dlopen needs the
 * shared libraries of the glibc it was linked with).
 */
#include "cnnrt.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

const cnn_model_desc *cnn_model_open(const char *path, void **handle, cnn_error *err)
{
    *handle = NULL;
    /* dlopen searches the library path for a name without a slash; a user
     * who types `net.so` means the file here. */
    char local[4096];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        if (snprintf(local, sizeof local, "./%s", path) >= (int)sizeof local)
            return cnn_fail(err, "%s: path too long", path), NULL;
        open_path = local;
    }
    dlerror();
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return cnn_fail(err, "%s: cannot load model: %s", path, dlerror()), NULL;
    dlerror();
    const cnn_model_desc *m = dlsym(h, CNN_MODEL_SYMBOL);
    const char *why = dlerror();
    if (why || !m) {
        cnn_fail(err, "%s: not a cnnc model (no symbol %s): %s", path, CNN_MODEL_SYMBOL,
                 why ? why : "symbol is NULL");
        dlclose(h);
        return NULL;
    }
    cnn_error inner;
    if (cnn_model_check(m, &inner) < 0) {
        cnn_fail(err, "%s: %s", path, inner.msg);
        dlclose(h);
        return NULL;
    }
    *handle = h;
    return m;
}

void cnn_model_close(void *handle)
{
    if (handle)
        dlclose(handle);
}
