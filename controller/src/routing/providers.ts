// The provider the chart chose (config routing.provider).
import type { OperatorConfig } from '../options/config.ts';
import { gatewayApi } from './gateway-api.ts';
import { istio } from './istio.ts';
import type { RoutingProvider } from './provider.ts';

export function routingProvider(config: OperatorConfig): RoutingProvider {
  return config.routing.provider === 'gatewayAPI' ? gatewayApi(config) : istio;
}
