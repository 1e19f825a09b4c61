%% distproxy_epmd: an `-epmd_module` for the trusted node.
%%
%% Registration is erl_epmd's (the node registers in its own, loopback-only EPMD). Every
%% lookup of another node, whatever host its name carries, is answered by distproxy's EPMD
%% and dialled at distproxy's address, so the trusted node reaches untrusted peers only
%% through distproxy and its application code needs no change.
%%
%% Start the trusted node with:
%%   erl -epmd_module distproxy_epmd -distproxy_address 127.0.0.1 -pa DIR ...
%% `-distproxy_address` (default 127.0.0.1) is where distproxy's back EPMD and listeners are;
%% the EPMD port is the node's usual one (ERL_EPMD_PORT / -epmd_port).
-module(distproxy_epmd).
-export([start_link/0, register_node/2, register_node/3, listen_port_please/2,
         port_please/2, port_please/3, address_please/3, names/0, names/1]).

start_link() -> erl_epmd:start_link().

register_node(Name, Port) -> erl_epmd:register_node(Name, Port).
register_node(Name, Port, Family) -> erl_epmd:register_node(Name, Port, Family).

listen_port_please(Name, Host) -> erl_epmd:listen_port_please(Name, Host).

port_please(Name, _Host) -> erl_epmd:port_please(Name, proxy_ip()).
port_please(Name, _Host, Timeout) -> erl_epmd:port_please(Name, proxy_ip(), Timeout).

address_please(Name, _Host, _Family) ->
    Ip = proxy_ip(),
    case erl_epmd:port_please(Name, Ip) of
        {port, Port, Version} -> {ok, Ip, Port, Version};
        noport -> {error, nxdomain};
        Error -> Error
    end.

names() -> erl_epmd:names().
names(Host) -> erl_epmd:names(Host).

proxy_ip() ->
    Text = case init:get_argument(distproxy_address) of
               {ok, [[Addr | _] | _]} -> Addr;
               _ -> "127.0.0.1"
           end,
    {ok, Ip} = inet:parse_address(Text),
    Ip.
