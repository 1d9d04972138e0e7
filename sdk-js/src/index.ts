export { Analytics } from './analytics';
export { LIBRARY } from './context';
export type { Callback, CallOptions, LoadOptions, Message, MessageType, Traits } from './types';
