/* cuDNN's convolution API, opened on first use (dlopen) like cuBLAS (cublas_dl.h): the
 * library and its engines are ~1 GB, needed only by the video VAE's 3D convolutions,
 * and a toolkit without cuDNN still builds and runs (VDIT_HAVE_CUDNN unset, or the
 * library missing at run time: the convolutions fall back to im2col + cuBLAS). */
#ifndef VDIT_CUDNN_DL_H
#define VDIT_CUDNN_DL_H

#include <cudnn.h>
#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  __typeof__ (cudnnCreate) *Create;
  __typeof__ (cudnnDestroy) *Destroy;
  __typeof__ (cudnnSetStream) *SetStream;
  __typeof__ (cudnnGetErrorString) *GetErrorString;
  __typeof__ (cudnnCreateTensorDescriptor) *CreateTensorDescriptor;
  __typeof__ (cudnnSetTensorNdDescriptor) *SetTensorNdDescriptor;
  __typeof__ (cudnnDestroyTensorDescriptor) *DestroyTensorDescriptor;
  __typeof__ (cudnnCreateFilterDescriptor) *CreateFilterDescriptor;
  __typeof__ (cudnnSetFilterNdDescriptor) *SetFilterNdDescriptor;
  __typeof__ (cudnnDestroyFilterDescriptor) *DestroyFilterDescriptor;
  __typeof__ (cudnnCreateConvolutionDescriptor) *CreateConvolutionDescriptor;
  __typeof__ (cudnnSetConvolutionNdDescriptor) *SetConvolutionNdDescriptor;
  __typeof__ (cudnnSetConvolutionMathType) *SetConvolutionMathType;
  __typeof__ (cudnnDestroyConvolutionDescriptor) *DestroyConvolutionDescriptor;
  __typeof__ (cudnnGetConvolutionForwardAlgorithm_v7) *GetConvolutionForwardAlgorithm_v7;
  __typeof__ (cudnnGetConvolutionForwardWorkspaceSize) *GetConvolutionForwardWorkspaceSize;
  __typeof__ (cudnnConvolutionForward) *ConvolutionForward;
} vdit_cudnn_fns;

extern vdit_cudnn_fns vdit_cudnn;

/* Opens libcudnn once (thread-safe); FALSE with VDIT_ERROR_NO_DEVICE naming what is
 * missing. */
gboolean vdit_cudnn_load (GError **error);

#define cudnnCreate vdit_cudnn.Create
#define cudnnDestroy vdit_cudnn.Destroy
#define cudnnSetStream vdit_cudnn.SetStream
#define cudnnGetErrorString vdit_cudnn.GetErrorString
#define cudnnCreateTensorDescriptor vdit_cudnn.CreateTensorDescriptor
#define cudnnSetTensorNdDescriptor vdit_cudnn.SetTensorNdDescriptor
#define cudnnDestroyTensorDescriptor vdit_cudnn.DestroyTensorDescriptor
#define cudnnCreateFilterDescriptor vdit_cudnn.CreateFilterDescriptor
#define cudnnSetFilterNdDescriptor vdit_cudnn.SetFilterNdDescriptor
#define cudnnDestroyFilterDescriptor vdit_cudnn.DestroyFilterDescriptor
#define cudnnCreateConvolutionDescriptor vdit_cudnn.CreateConvolutionDescriptor
#define cudnnSetConvolutionNdDescriptor vdit_cudnn.SetConvolutionNdDescriptor
#define cudnnSetConvolutionMathType vdit_cudnn.SetConvolutionMathType
#define cudnnDestroyConvolutionDescriptor vdit_cudnn.DestroyConvolutionDescriptor
#define cudnnGetConvolutionForwardAlgorithm_v7 vdit_cudnn.GetConvolutionForwardAlgorithm_v7
#define cudnnGetConvolutionForwardWorkspaceSize vdit_cudnn.GetConvolutionForwardWorkspaceSize
#define cudnnConvolutionForward vdit_cudnn.ConvolutionForward

G_END_DECLS

#endif
